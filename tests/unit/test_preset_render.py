"""Reproducible preset tarballs: same input, same bytes; fixed order, owners, modes, times."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automation_server.presets.catalog import load_builtins
from automation_server.presets.plugin import PluginLookup, plugin_variant
from automation_server.presets.prompt import prompt_config
from automation_server.presets.render import DIR_MODE, EXEC_MODE, FILE_MODE, MTIME, build_tarball
from automation_server.presets.schemas import PluginRef
from automation_server.presets.sources import PRESETS_DIR, PresetSources
from automation_server.storage.archive import ArchiveLimits, validate_archive

FILES = {
    "main.py": b"print('hi')\n",
    "preset.json": b'{"model":"m"}\n',
    "_preset/llm.py": b"# llm\n",
    "_preset/sub/deep.txt": b"deep\n",
    "a.txt": b"a\n",
}


@pytest.fixture(scope="module")
def sources() -> PresetSources:
    return PresetSources()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_same_files_in_any_order_give_the_same_bytes() -> None:
    shuffled = list(FILES.items())
    random.Random(7).shuffle(shuffled)

    assert build_tarball(FILES) == build_tarball(dict(shuffled))


def test_a_changed_byte_changes_the_digest() -> None:
    changed = {**FILES, "a.txt": b"b\n"}

    assert digest(build_tarball(changed)) != digest(build_tarball(FILES))


def test_members_are_sorted_with_directories_before_their_contents() -> None:
    names = [m.name for m in members(build_tarball(FILES))]

    assert names == [
        "_preset",
        "_preset/llm.py",
        "_preset/sub",
        "_preset/sub/deep.txt",
        "a.txt",
        "main.py",
        "preset.json",
    ]


def test_owners_times_and_modes_are_fixed() -> None:
    for member in members(build_tarball(FILES, executable={"main.py"})):
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == MTIME
        if member.isdir():
            assert member.mode == DIR_MODE
        else:
            assert member.isreg()
            assert member.mode == (EXEC_MODE if member.name == "main.py" else FILE_MODE)


def test_gzip_header_has_no_time_and_no_file_name() -> None:
    data = build_tarball(FILES)
    flags, mtime = data[3], data[4:8]

    assert data[:3] == b"\x1f\x8b\x08"
    assert mtime == b"\x00\x00\x00\x00"
    assert not flags & 0x08  # FNAME
    assert gzip.decompress(data)  # and still a valid stream


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../b", "./a", "a//b", ""])
def test_refuses_unclean_member_names(name: str) -> None:
    with pytest.raises(ValueError, match="member name"):
        build_tarball({name: b"x"})


def test_refuses_a_name_used_as_file_and_directory() -> None:
    with pytest.raises(ValueError, match="both as a file and as a directory"):
        build_tarball({"a": b"x", "a/b": b"y"})


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,3}(/[a-z]{1,3}){0,2}\.txt", fullmatch=True),
        st.binary(max_size=64),
        max_size=8,
    )
)
def test_rendering_is_a_function_of_the_files(files: dict[str, bytes]) -> None:
    first = build_tarball(files)
    again = build_tarball(dict(reversed(list(files.items()))))

    assert first == again
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        for name, content in files.items():
            extracted = tar.extractfile(name)
            assert extracted is not None and extracted.read() == content


# ---- whole preset tarballs -------------------------------------------------------


def prompt_tarball(sources: PresetSources, **fields: object) -> bytes:
    config = prompt_config({"model": "m", "prompt": "Hi {{ payload.who }}", **fields}, "")
    return build_tarball(sources.base("prompt", config))


def test_equal_prompt_configs_give_equal_tarballs(sources: PresetSources) -> None:
    assert prompt_tarball(sources, temperature=0.5) == prompt_tarball(sources, temperature=0.5)
    # Unset optional fields are the same configuration as absent ones.
    assert prompt_tarball(sources, system_prompt="") == prompt_tarball(sources)
    assert digest(prompt_tarball(sources, temperature=0.5)) != digest(
        prompt_tarball(sources, temperature=0.6)
    )


def test_prompt_tarball_holds_the_preset_and_no_copied_packages(sources: PresetSources) -> None:
    names = {m.name for m in members(prompt_tarball(sources))}

    assert {"main.py", "preset.json", "_preset/llm.py", "_preset/templating.py"} <= names
    # Jinja2 and MarkupSafe come from the variant's environment, not the tarball.
    assert not [n for n in names if n.startswith("_vendor/") or "jinja2" in n]
    assert not [n for n in names if n.endswith((".so", ".pyc", ".c"))]


def test_preset_requirements_pin_the_servers_own_versions() -> None:
    import importlib.metadata as metadata

    from automation_server.presets.sources import preset_requirements

    assert preset_requirements() == [
        f"jinja2=={metadata.version('jinja2')}",
        f"markupsafe=={metadata.version('markupsafe')}",
    ]


def test_rendered_tarballs_pass_upload_validation(sources: PresetSources) -> None:
    info = validate_archive(prompt_tarball(sources), ArchiveLimits())

    assert info.files >= 5  # main.py, preset.json and the _preset/ helpers


def test_plugin_tarball_holds_only_the_plugins_it_names(sources: PresetSources) -> None:
    lookup = PluginLookup(load_builtins(PRESETS_DIR / "plugins"), None, "org")  # type: ignore[arg-type]
    refs = [
        PluginRef("command", {"argv": ["true"]}),
        PluginRef("fetch", {"url": "http://x/"}),
        PluginRef("command", {"argv": ["false"], "expect_exit_code": 1}),
    ]
    made = plugin_variant(lookup, sources, {"model": "m", "plugins": refs}, "variants[0]")
    data = build_tarball(made.files)

    plugin_dirs = {m.name.split("/")[1] for m in members(data) if m.name.startswith("plugins/")}
    assert plugin_dirs == {"command", "fetch"}
    assert data == build_tarball(
        plugin_variant(lookup, sources, {"model": "m", "plugins": refs}, "variants[0]").files
    )
