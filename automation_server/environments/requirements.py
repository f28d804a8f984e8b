"""A variant's requirement lines, checked before anything resolves them.

Lines are requirement specifiers (names, extras, version ranges, markers), as
``packaging`` parses them. Everything that would fetch code from elsewhere or
change where packages come from is refused, naming the line: URLs and direct
references (``pkg @ https://...``), local paths, editable installs, nested
requirement files and index or find-links options. The server decides where
packages come from (``AUTOMATION_PACKAGE_INDEX_URL`` and
``AUTOMATION_PACKAGE_FIND_LINKS``), never a tarball.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from automation_server.errors import Invalid

MAX_REQUIREMENTS_BYTES = 64 * 1024
MAX_REQUIREMENTS = 500
REQUIREMENTS_FILE = "requirements.txt"
_OPTION_WORDS = {
    "-e": "editable installs (-e) are not allowed",
    "--editable": "editable installs (-e) are not allowed",
    "-r": "nested requirement files (-r) are not allowed",
    "--requirement": "nested requirement files (-r) are not allowed",
    "-c": "constraint files (-c) are not allowed",
    "--constraint": "constraint files (-c) are not allowed",
    "-i": "index options are not allowed: the server chooses the package index",
    "--index-url": "index options are not allowed: the server chooses the package index",
    "--extra-index-url": "index options are not allowed: the server chooses the package index",
    "--no-index": "index options are not allowed: the server chooses the package index",
    "-f": "find-links options are not allowed: the server chooses the package sources",
    "--find-links": "find-links options are not allowed: the server chooses the package sources",
}


@dataclass(frozen=True)
class Requirements:
    """Checked requirement lines, normalised (one specifier per line, comments dropped)."""

    lines: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.lines

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


def parse_requirements(lines: Iterable[str], field: str) -> Requirements:
    """Check each line; a refused or malformed one answers 422 naming it."""
    checked: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        checked.append(_check_line(line, number, field))
        if len(checked) > MAX_REQUIREMENTS:
            raise _invalid(f"more than {MAX_REQUIREMENTS} requirements", field)
    return Requirements(tuple(checked))


def parse_requirements_file(data: bytes, field: str) -> Requirements:
    if len(data) > MAX_REQUIREMENTS_BYTES:
        raise _invalid(
            f"{REQUIREMENTS_FILE} is {len(data)} bytes, over the limit of "
            f"{MAX_REQUIREMENTS_BYTES} bytes",
            field,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"{REQUIREMENTS_FILE} is not UTF-8 text", field) from None
    return parse_requirements(_joined(text.splitlines()), field)


def _joined(lines: list[str]) -> list[str]:
    """Backslash continuations joined, as pip reads them."""
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def _check_line(line: str, number: int, field: str) -> str:
    where = f"line {number} {line[:120]!r}"
    first = line.split(maxsplit=1)[0].split("=", 1)[0]
    if first.startswith("-"):
        reason = _OPTION_WORDS.get(first, "options are not allowed, only requirement specifiers")
        raise _invalid(f"{where}: {reason}", field)
    if "://" in line or line.startswith((".", "/", "~")) or "\\" in line:
        raise _invalid(f"{where}: URLs and local paths are not allowed", field)
    if " --hash" in line or line.startswith("--hash"):
        raise _invalid(f"{where}: hashes are computed by the server", field)
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        raise _invalid(f"{where}: not a requirement specifier ({exc})", field) from None
    if requirement.url:
        raise _invalid(f"{where}: direct references (name @ url) are not allowed", field)
    return str(requirement)


def _invalid(detail: str, field: str) -> Invalid:
    return Invalid(f"{field}: {detail}", field=field, code="invalid_requirements")
