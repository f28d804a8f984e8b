"""validate_archive: what a user uploading a .tar.gz is told, member by member."""

from __future__ import annotations

import io
import tarfile

import pytest

from automation_server.errors import InvalidArchive
from automation_server.storage.archive import ArchiveInfo, ArchiveLimits, validate_archive
from tests.unit.archive_builders import (
    block_device,
    char_device,
    directory,
    fifo,
    file,
    gz,
    hardlink,
    sample_project,
    special,
    symlink,
    tar_bytes,
    targz,
    with_pax,
)


def refused(data: bytes, limits: ArchiveLimits | None = None) -> str:
    with pytest.raises(InvalidArchive) as caught:
        validate_archive(data, limits or ArchiveLimits())
    return str(caught.value)


# --- valid archives ---------------------------------------------------------


def test_counts_regular_files_and_their_bytes():
    entries = sample_project()
    expected_size = sum(len(e.data) for e in entries if e.info.type == tarfile.REGTYPE)

    info = validate_archive(targz(entries))

    assert info == ArchiveInfo(files=3, size=expected_size)


def test_same_bytes_give_same_info_from_bytes_and_from_a_stream():
    data = targz(sample_project())

    assert validate_archive(data) == validate_archive(data)
    assert validate_archive(io.BytesIO(data)) == validate_archive(data)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_accepts_every_common_tar_format_with_long_names(fmt):
    deep = "/".join(["pkg"] * 40) + "/module_with_a_rather_long_name.py"
    entries = [file("short.py", b"x = 1\n"), file(deep, b"y = 2\n"), symlink("alias.py", deep)]
    if fmt == tarfile.USTAR_FORMAT:  # ustar cannot hold these long names at all
        entries = entries[:1]

    assert validate_archive(targz(entries, fmt)).files == (1 if fmt == tarfile.USTAR_FORMAT else 2)


def test_accepts_dot_slash_names_and_the_root_directory_entry():
    # What `tar czf x.tgz -C dir .` produces.
    data = targz([directory("."), directory("./src"), file("./src/a.py", b"a"), file("./b", b"bb")])

    assert validate_archive(data) == ArchiveInfo(files=2, size=3)


def test_accepts_small_very_compressible_archives():
    # 4 MiB of zeros compresses about 1000:1, far over the ratio limit, but
    # stays under the floor where the ratio starts to count.
    data = targz([file("blank.img", bytes(4 * 1024 * 1024)), file("main.py", b"pass\n")])

    assert validate_archive(data).size == 4 * 1024 * 1024 + 5


def test_accepts_links_that_stay_inside():
    entries = [
        file("lib/real.so.1.2", b"\x7fELF"),
        symlink("lib/real.so.1", "real.so.1.2"),
        symlink("lib/real.so", "real.so.1"),
        symlink("bin/tool", "../lib/./real.so"),
        symlink("here", "."),
        symlink("dangling", "does/not/exist"),
    ]

    assert validate_archive(targz(entries)).files == 1


# --- not a readable .tar.gz -------------------------------------------------


def test_rejects_empty_upload():
    assert "empty" in refused(b"")


def test_rejects_data_that_is_not_gzip():
    assert "not a gzip" in refused(tar_bytes([file("a.py", b"plain tar, not gzipped")]))


def test_rejects_truncated_gzip():
    data = targz(sample_project())

    assert "truncated" in refused(data[: len(data) // 2])


def test_rejects_gzip_with_corrupt_checksum():
    data = bytearray(targz(sample_project()))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer

    assert "corrupt gzip" in refused(bytes(data))


def test_rejects_gzip_of_something_that_is_not_tar():
    assert "not a valid tar archive" in refused(gz(b"just some text, " * 100))


def test_rejects_gzip_of_nothing():
    assert "empty" in refused(gz(b""))


def test_rejects_tar_with_no_members():
    assert "no regular files" in refused(targz([]))


def test_rejects_archive_of_only_directories_and_links():
    assert "no regular files" in refused(targz([directory("src"), symlink("x", "src")]))


def test_rejects_data_after_the_end_of_the_archive():
    data = gz(tar_bytes([file("a.py", b"a")]) + b"garbage after the end marker")

    assert "after the end" in refused(data)


# --- names --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/cron.d/evil", "//double", "/"])
def test_rejects_absolute_paths(name):
    message = refused(targz([file("ok.py", b""), file(name, b"x")]))

    assert message == f"member {name!r}: absolute paths are not allowed"


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/b/../c", "./..", ".."])
def test_rejects_any_dotdot_component(name):
    message = refused(targz([file(name, b"x")]))

    assert message == f"member {name!r}: path leaves the archive root"


def test_rejects_component_longer_than_limit():
    name = "src/" + "n" * 256

    assert "longer than 255 bytes" in refused(targz([file(name, b"x")]))


def test_component_limit_counts_utf8_bytes_not_characters():
    name = "é" * 128  # 128 characters, 256 bytes

    assert "longer than 255 bytes" in refused(targz([file(name, b"x")]))
    assert validate_archive(targz([file("é" * 127, b"x")])).files == 1


def test_rejects_path_longer_than_limit():
    name = "d/" * 2048 + "f"

    assert "longer than 4096 bytes" in refused(targz([file(name, b"x")]))


def test_rejects_nul_in_a_name():
    entry = with_pax(file("placeholder", b"x"), path="ok\x00/etc/passwd")

    assert "NUL" in refused(targz([entry]))


def test_rejects_duplicate_names_even_when_spelled_differently():
    message = refused(targz([file("a.py", b"1"), file("./a.py", b"2")]))

    assert message == "member './a.py': duplicate entry in the archive"


def test_rejects_file_where_a_directory_was():
    assert "directory" in refused(targz([file("pkg/mod.py", b""), file("pkg", b"")]))


def test_rejects_path_through_a_regular_file():
    assert "goes through the file 'pkg'" in refused(
        targz([file("pkg", b""), file("pkg/mod.py", b"")])
    )


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        (file("src/.", b"x"), "file"),
        (file("src/", b"x"), "file"),
        (file(".", b"x"), "file"),
        (symlink("src/.", "main.py"), "symbolic link"),
    ],
    ids=["file-dot", "file-slash", "file-root", "link-dot"],
)
def test_rejects_file_or_link_named_like_a_directory(entry, kind):
    # On disk "src/." is the directory src itself, not a new file in it.
    message = refused(targz([file("src/main.py", b"x"), entry]))

    assert message == f"member {entry.info.name!r}: a {kind} name cannot end in '/' or '.'"


# --- member types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (hardlink("b", "a"), "hard links are not allowed"),
        (char_device("null"), "character devices are not allowed"),
        (block_device("sda"), "block devices are not allowed"),
        (fifo("pipe"), "FIFOs are not allowed"),
        (special("contig", tarfile.CONTTYPE), "contiguous files are not supported"),
        (special("weird", b"Z"), "unsupported member type"),
    ],
)
def test_rejects_special_member_types(entry, reason):
    message = refused(targz([file("a", b"x"), entry], tarfile.GNU_FORMAT))

    assert message.startswith(f"member {entry.info.name!r}: ")
    assert reason in message


def test_rejects_hard_link_even_to_a_file_inside():
    assert "hard links" in refused(targz([file("a", b"x"), hardlink("b", "a")]))


def test_rejects_gnu_sparse_files():
    assert "sparse" in refused(
        targz([special("holes", tarfile.GNUTYPE_SPARSE)], tarfile.GNU_FORMAT)
    )


def test_rejects_pax_sparse_files():
    entry = with_pax(
        file("holes", b"\0" * 512),
        **{"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "1"},
    )

    assert "sparse" in refused(targz([entry]))


# --- symbolic links -----------------------------------------------------------


def test_rejects_symlink_to_absolute_path():
    message = refused(targz([file("a", b""), symlink("passwd", "/etc/passwd")]))

    assert message == "member 'passwd': symbolic link to an absolute path '/etc/passwd'"


@pytest.mark.parametrize(
    ("name", "target"), [("up", ".."), ("sub/x", "../../etc"), ("y", "a/../..")]
)
def test_rejects_symlink_leaving_root(name, target):
    message = refused(targz([file("a", b""), symlink(name, target)]))

    assert message == f"member {name!r}: symbolic link to {target!r} leaves the archive root"


@pytest.mark.parametrize("reverse", [False, True], ids=["link-first", "link-last"])
def test_rejects_symlink_chain_leaving_root(reverse):
    # Each link alone stays inside; together "esc" resolves to root/..
    links = [symlink("sub/up", ".."), symlink("esc", "sub/up/..")]
    if reverse:
        links.reverse()

    assert "member 'esc'" in refused(targz([file("a", b""), *links]))


def test_rejects_symlink_loop():
    message = refused(targz([file("a", b""), symlink("x", "y"), symlink("y", "x")]))

    assert "too many levels of symbolic links" in message


def test_rejects_file_written_through_a_symlinked_directory():
    # "d" points inside, but a later member writing through it is how an
    # innocent-looking link becomes a write anywhere once "d" is swapped.
    message = refused(targz([directory("real"), symlink("d", "real"), file("d/x", b"x")]))

    assert message == "member 'd/x': path goes through the symbolic link 'd'"


def test_rejects_symlink_replacing_a_directory_that_holds_members():
    message = refused(targz([file("d/x", b"x"), file("e", b""), symlink("d", "e")]))

    assert message == "member 'd': symbolic link where earlier members put a directory"


def test_rejects_symlink_with_empty_target():
    assert "empty target" in refused(targz([file("a", b""), symlink("l", "")]))
