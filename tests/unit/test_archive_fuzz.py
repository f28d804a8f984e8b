"""Property tests: no input makes the archive code fail in any other way than refusing it."""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation_server.errors import InvalidArchive
from automation_server.storage.archive import (
    ArchiveInfo,
    ArchiveLimits,
    safe_extract,
    validate_archive,
)
from tests.unit.archive_builders import (
    directory,
    file,
    gz,
    hardlink,
    sample_project,
    symlink,
    tar_bytes,
    with_pax,
)

# Small limits so that mutated sizes and counts hit them too.
LIMITS = ArchiveLimits(
    max_uncompressed_bytes=256 * 1024, max_members=64, ratio_floor_bytes=64 * 1024
)

SEEDS = [
    tar_bytes(sample_project(), tarfile.PAX_FORMAT),
    tar_bytes(sample_project(), tarfile.GNU_FORMAT),
    tar_bytes([file("a.py", b"print(1)\n"), directory("d")], tarfile.USTAR_FORMAT),
    tar_bytes(
        [
            with_pax(file("p" * 120 + ".py", b"long name"), comment="x" * 40),
            symlink("l" * 120, "p" * 120 + ".py"),
        ],
        tarfile.PAX_FORMAT,
    ),
    tar_bytes(
        [file("n" * 150 + "/" + "m" * 120, b"gnu long name"), symlink("s", "k" * 130)],
        tarfile.GNU_FORMAT,
    ),
]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def validate_or_refuse(data: bytes) -> ArchiveInfo | None:
    """The only two outcomes allowed: a valid archive's info, or InvalidArchive."""
    try:
        return validate_archive(data, LIMITS)
    except InvalidArchive as exc:
        assert str(exc)  # always a reason
        return None


# Edits as small tuples rather than the edited bytes, so that a failing
# example prints as a few numbers, not 10 KB of archive.
EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(
        st.just("set"),
        st.integers(0, 2**16),
        st.one_of(st.sampled_from([0, 0x30, 0x37, 0x2F, 0x2E, 0xFF]), st.integers(0, 255)),
    ),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, 2**16), st.just(0)),
)
EDITS = st.lists(EDIT, min_size=1, max_size=8)
SEED = st.integers(0, len(SEEDS) - 1)


def edited(data: bytes, edits: list[tuple[str, int, object]]) -> bytes:
    out = bytearray(data)
    for action, position, arg in edits:
        if not out:
            break
        at = position % len(out)
        if action == "flip":
            out[at] ^= 1 << int(arg)  # type: ignore[call-overload]
        elif action == "set":
            out[at] = int(arg)  # type: ignore[call-overload]
        elif action == "insert":
            out[at:at] = arg  # type: ignore[assignment]
        elif action == "delete":
            del out[at : at + int(arg)]  # type: ignore[call-overload]
        else:
            del out[at:]
    return bytes(out)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_cleanly(data):
    validate_or_refuse(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_gzipped_bytes_are_refused_cleanly(data):
    validate_or_refuse(gz(data))


@FUZZ
@given(SEED, EDITS)
def test_mutated_gzip_bytes_are_refused_cleanly(seed, edits):
    validate_or_refuse(edited(gz(SEEDS[seed]), edits))


@FUZZ
@given(SEED, EDITS)
def test_mutated_tar_headers_are_refused_cleanly(seed, edits):
    validate_or_refuse(gz(edited(SEEDS[seed], edits)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SEED, EDITS)
def test_extraction_agrees_with_validation_and_stays_inside(seed, edits):
    data = gz(edited(SEEDS[seed], edits))
    expected = validate_or_refuse(data)
    with tempfile.TemporaryDirectory() as tmp:
        box = Path(tmp)
        (box / "sentinel").mkdir()
        dest = box / "dest"
        try:
            info = safe_extract(data, dest, LIMITS)
        except InvalidArchive:
            assert expected is None
            assert not dest.exists()
        else:
            assert info == expected
            for path in dest.rglob("*"):  # nothing escaped: every path resolves inside
                if not path.is_symlink():
                    assert path.resolve().is_relative_to(dest.resolve())
        assert (
            {p.name for p in box.iterdir()} == {"sentinel", "dest"}
            if dest.exists()
            else {"sentinel"}
        )
        assert list((box / "sentinel").iterdir()) == []


def test_seeds_are_valid_archives():
    # The mutation tests start from valid archives, or they test little.
    for seed in SEEDS:
        assert validate_archive(gz(seed), LIMITS).files >= 1


# Archives made of hostile-looking but well-formed members: the tree and link
# rules must either refuse them or produce a tree where every path, links
# followed, stays inside the destination.
COMPONENT = st.sampled_from(["a", "b", "c", "..", ".", ""])
PATH = st.lists(COMPONENT, min_size=1, max_size=4).map("/".join)
MEMBER = st.one_of(
    st.builds(lambda p: file(p, b"data"), PATH),
    st.builds(directory, PATH),
    st.builds(symlink, PATH, PATH),
    st.builds(hardlink, PATH, PATH),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MEMBER, min_size=1, max_size=8))
def test_structured_archives_extract_inside_or_are_refused(entries):
    data = gz(tar_bytes(entries, tarfile.GNU_FORMAT))
    expected = validate_or_refuse(data)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "dest"
        try:
            info = safe_extract(data, dest, LIMITS)
        except InvalidArchive:
            assert expected is None
            assert list(Path(tmp).iterdir()) == []
            return
        assert info == expected
        root = dest.resolve()
        for path in dest.rglob("*"):
            assert Path(os.path.realpath(path)).is_relative_to(root), path
