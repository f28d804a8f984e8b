"""validate_archive under hostile sizes: bombs, ratios, counts, headers, memory."""

from __future__ import annotations

import io
import itertools
import random
import tarfile
import time
import tracemalloc

import pytest

from automation_server.errors import InvalidArchive, TooLarge
from automation_server.storage.archive import ArchiveLimits, validate_archive
from tests.unit.archive_builders import (
    END_OF_ARCHIVE,
    GzipStream,
    MiB,
    bomb_after_end,
    bomb_member,
    bomb_of_small_members,
    file,
    gz,
    header_block,
    special,
    targz,
    with_pax,
)


def refused(source: bytes | io.RawIOBase, limits: ArchiveLimits | None = None) -> str:
    with pytest.raises(InvalidArchive) as caught:
        validate_archive(source, limits or ArchiveLimits())  # type: ignore[arg-type]
    return str(caught.value)


def test_limits_have_documented_defaults():
    limits = ArchiveLimits()

    assert limits.max_compressed_bytes == 50 * MiB
    assert limits.max_uncompressed_bytes == 512 * MiB
    assert limits.max_members == 10_000
    assert (limits.max_name_bytes, limits.max_path_bytes) == (255, 4096)
    assert limits.max_ratio == 200 and limits.ratio_floor_bytes == 16 * MiB


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_members"):
        ArchiveLimits(max_members=0)


# --- counts and sizes ----------------------------------------------------------


def test_rejects_more_members_than_the_limit():
    entries = [file(f"f{i}.py", b"") for i in range(11)]

    assert validate_archive(targz(entries[:10]), ArchiveLimits(max_members=10)).files == 10
    assert "more than 10 entries" in refused(targz(entries), ArchiveLimits(max_members=10))


def test_directories_implied_by_paths_count_as_entries():
    # One member, but extracting it creates 20 directories.
    name = "/".join(f"d{i}" for i in range(20)) + "/f.py"

    assert "more than 10 entries" in refused(
        targz([file(name, b"")]), ArchiveLimits(max_members=10)
    )


def test_rejects_uncompressed_size_over_limit_from_the_headers():
    limits = ArchiveLimits(max_uncompressed_bytes=1 * MiB)
    entries = [file("a.bin", bytes(600 * 1024)), file("b.bin", bytes(600 * 1024))]

    message = refused(targz(entries), limits)

    assert message.startswith("member 'b.bin': files add up to more than 1 MiB")


def test_rejects_compressed_size_over_limit_as_too_large():
    data = targz([file("random.bin", bytes(range(256)) * 64)])

    with pytest.raises(TooLarge):
        validate_archive(data, ArchiveLimits(max_compressed_bytes=len(data) - 1))
    assert validate_archive(data, ArchiveLimits(max_compressed_bytes=len(data))).files == 1


def test_stops_reading_an_endless_stream_at_the_compressed_limit():
    # An incompressible member that never ends: only the compressed limit stops it.
    noise = random.Random(0).randbytes(MiB)  # repeats beyond deflate's 32 KiB window
    info = tarfile.TarInfo("noise.bin")
    info.size = 8 * 1024**3
    source = GzipStream(
        itertools.chain([header_block(info, tarfile.GNU_FORMAT)], itertools.repeat(noise))
    )
    limits = ArchiveLimits(max_compressed_bytes=2 * MiB, max_uncompressed_bytes=16 * 1024**3)

    with pytest.raises(TooLarge, match="larger than 2 MiB compressed"):
        validate_archive(source, limits)  # type: ignore[arg-type]
    assert source.produced < 8 * MiB


# --- gzip bombs ------------------------------------------------------------------


def _validate_traced(source: GzipStream, limits: ArchiveLimits | None = None) -> tuple[str, int]:
    tracemalloc.start()
    try:
        message = refused(source, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return message, peak


def test_gzip_bomb_of_one_huge_member_is_refused_from_its_header():
    bomb = bomb_member(600 * MiB)
    started = time.monotonic()

    message, peak = _validate_traced(bomb)

    assert "files add up to more than 512 MiB" in message
    assert bomb.produced < 16 * MiB  # the data was never decompressed
    assert peak < 50 * MiB
    assert time.monotonic() - started < 20


def test_gzip_bomb_hidden_after_the_end_marker_is_stopped_by_the_ratio():
    bomb = bomb_after_end(600 * MiB)

    message, peak = _validate_traced(bomb)

    assert "compression ratio is over 200:1" in message
    assert bomb.produced < 64 * MiB  # stopped soon after the 16 MiB floor
    assert peak < 50 * MiB


def test_gzip_bomb_of_many_small_members_is_stopped_by_the_ratio():
    bomb = bomb_of_small_members(count=300, size=2 * MiB)

    message, peak = _validate_traced(bomb)

    assert "compression ratio" in message
    assert bomb.produced < 64 * MiB
    assert peak < 50 * MiB


def test_decompressed_size_is_bounded_even_when_the_ratio_is_allowed():
    limits = ArchiveLimits(max_uncompressed_bytes=8 * MiB, max_ratio=1e9)
    bomb = bomb_after_end(600 * MiB)

    message, peak = _validate_traced(bomb, limits)

    assert message == "archive expands to more than 8 MiB"
    assert bomb.produced < 32 * MiB  # the test's compressor buffers a few MiB itself
    assert peak < 50 * MiB


def test_ratio_limit_applies_only_past_the_floor():
    data = targz([file("zeros.bin", bytes(3 * MiB))])  # ratio about 1000:1

    assert validate_archive(data, ArchiveLimits(ratio_floor_bytes=4 * MiB)).files == 1
    assert "compression ratio is over 50:1" in refused(
        data, ArchiveLimits(ratio_floor_bytes=1 * MiB, max_ratio=50)
    )


def test_ordinary_compressible_source_passes_the_ratio_limit():
    source = b"".join(f"def function_{i}(x):\n    return x * {i}\n\n".encode() for i in range(5000))
    limits = ArchiveLimits(ratio_floor_bytes=64 * 1024)

    assert validate_archive(targz([file("big.py", source)]), limits).size == len(source)


# --- extended headers ---------------------------------------------------------------


def test_rejects_oversized_pax_header():
    entry = with_pax(file("a.py", b"x"), comment="c" * (2 * MiB))

    assert "extended header of" in refused(targz([entry]))


def test_rejects_oversized_gnu_long_name_header():
    long_name = tarfile.TarInfo("././@LongLink")
    long_name.type = tarfile.GNUTYPE_LONGNAME
    long_name.size = 2 * MiB
    data = gz(header_block(long_name) + bytes(2 * MiB) + END_OF_ARCHIVE)

    assert "extended header of" in refused(data)


def test_rejects_long_chain_of_extended_headers():
    blocks = []
    for _ in range(50):
        pax = tarfile.TarInfo("pax")
        pax.type = tarfile.XHDTYPE
        record = b"17 comment=chain\n"
        pax.size = len(record)
        blocks.append(header_block(pax) + record + bytes(512 - len(record)))
    target = header_block(tarfile.TarInfo("a.py"))
    data = gz(b"".join(blocks) + target + END_OF_ARCHIVE)

    assert "too many consecutive extended headers" in refused(data)


def test_rejects_negative_member_size():
    entry = special("neg", tarfile.REGTYPE)
    entry.info.size = -1024

    message = refused(gz(header_block(entry.info, tarfile.GNU_FORMAT) + END_OF_ARCHIVE))

    assert "neg" in message


def test_validation_does_not_write_to_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    validate_archive(targz([file("a.py", b"a"), file("b/c.py", b"c")]))

    assert list(tmp_path.iterdir()) == []
