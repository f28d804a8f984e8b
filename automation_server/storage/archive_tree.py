"""The archive's paths as a tree, and the rules every member is checked against."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from enum import Enum

from automation_server.errors import InvalidArchive
from automation_server.storage.archive_limits import (
    _FILE_TYPES,
    _MAX_LINK_HOPS,
    _MAX_LINK_STEPS,
    _REFUSED_TYPES,
    ArchiveInfo,
    ArchiveLimits,
    encoded,
    human,
)


class MemberKind(Enum):
    FILE = "file"
    DIR = "directory"
    IMPLIED_DIR = "implied directory"
    SYMLINK = "symbolic link"


class MemberNode:
    """One path of the archive's tree; children by name for directories."""

    __slots__ = ("children", "kind", "target")

    def __init__(self, kind: MemberKind, target: str | None = None) -> None:
        self.kind = kind
        self.target = target
        self.children: dict[str, MemberNode] = {}


class MemberTree:
    """The archive's paths as a tree, with the per-member rules."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self._root = MemberNode(MemberKind.DIR)
        self._symlinks: list[tuple[str, tuple[str, ...]]] = []
        self._members = 0
        self._entries = 0
        self._link_steps = 0
        self.files = 0
        self.size = 0

    def add(self, member: tarfile.TarInfo) -> bool:
        """Check one member; False for the archive root itself (nothing to extract)."""
        self._members += 1
        if self._members > self.limits.max_members:
            raise InvalidArchive(f"archive has more than {self.limits.max_members} entries")
        name = member.name
        parts = self._check_name(name)
        kind = self._check_type(member)
        if kind is not MemberKind.DIR and name.rsplit("/", 1)[-1] in ("", "."):
            # "a/." names the directory a on disk, not a new file or link in it.
            raise InvalidArchive(f"member {name!r}: a {kind.value} name cannot end in '/' or '.'")
        if not parts:
            return False
        if kind is MemberKind.FILE:
            self._add_file_size(member)
        elif kind is MemberKind.SYMLINK:
            self._check_link_target(member)
        self._insert(name, parts, kind, member.linkname if kind is MemberKind.SYMLINK else None)
        if kind is MemberKind.SYMLINK:
            self._symlinks.append((name, parts))
            self._check_link_stays_inside(name, parts)
        return True

    def finish(self) -> ArchiveInfo:
        if self.files == 0:
            raise InvalidArchive("the archive contains no regular files")
        # A link checked when it was read may since have gained a route out
        # through a later link (a -> b/.. and then b -> ..): check them all
        # again with the whole tree known.
        for name, parts in self._symlinks:
            self._check_link_stays_inside(name, parts)
        return ArchiveInfo(files=self.files, size=self.size)

    def directories(self) -> Iterator[tuple[str, ...]]:
        """Every directory path, listed or implied, parents first."""
        pending: list[tuple[tuple[str, ...], MemberNode]] = [((), self._root)]
        while pending:
            path, node = pending.pop()
            for part, child in node.children.items():
                if child.kind in (MemberKind.DIR, MemberKind.IMPLIED_DIR):
                    yield (*path, part)
                    pending.append(((*path, part), child))

    def _check_name(self, name: str) -> tuple[str, ...]:
        limits = self.limits
        if "\x00" in name:
            raise InvalidArchive(f"member {name!r}: name contains a NUL byte")
        if name.startswith("/"):
            raise InvalidArchive(f"member {name!r}: absolute paths are not allowed")
        if len(encoded(name)) > limits.max_path_bytes:
            raise InvalidArchive(
                f"member {name[:80]!r}...: path is longer than {limits.max_path_bytes} bytes"
            )
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        for part in parts:
            if part == "..":
                raise InvalidArchive(f"member {name!r}: path leaves the archive root")
            if len(encoded(part)) > limits.max_name_bytes:
                raise InvalidArchive(
                    f"member {name[:80]!r}...: a path component is longer than"
                    f" {limits.max_name_bytes} bytes"
                )
        return parts

    @staticmethod
    def _check_type(member: tarfile.TarInfo) -> MemberKind:
        if member.type in _REFUSED_TYPES:
            raise InvalidArchive(f"member {member.name!r}: {_REFUSED_TYPES[member.type]}")
        if member.sparse is not None:
            raise InvalidArchive(f"member {member.name!r}: sparse files are not supported")
        if member.type == tarfile.DIRTYPE:
            return MemberKind.DIR
        if member.type == tarfile.SYMTYPE:
            return MemberKind.SYMLINK
        if member.type in _FILE_TYPES:
            return MemberKind.FILE
        raise InvalidArchive(f"member {member.name!r}: unsupported member type {member.type!r}")

    def _add_file_size(self, member: tarfile.TarInfo) -> None:
        if member.size < 0:
            raise InvalidArchive(f"member {member.name!r}: negative size")
        self.files += 1
        self.size += member.size
        # The header announces the size: refuse before reading the data.
        if self.size > self.limits.max_uncompressed_bytes:
            raise InvalidArchive(
                f"member {member.name!r}: files add up to more than"
                f" {human(self.limits.max_uncompressed_bytes)}"
            )

    def _check_link_target(self, member: tarfile.TarInfo) -> None:
        name, target = member.name, member.linkname
        if not target:
            raise InvalidArchive(f"member {name!r}: symbolic link with an empty target")
        if "\x00" in target:
            raise InvalidArchive(f"member {name!r}: link target contains a NUL byte")
        if len(encoded(target)) > self.limits.max_path_bytes:
            raise InvalidArchive(
                f"member {name!r}: link target is longer than {self.limits.max_path_bytes} bytes"
            )
        if target.startswith("/"):
            raise InvalidArchive(
                f"member {name!r}: symbolic link to an absolute path {target[:200]!r}"
            )

    def _insert(
        self, name: str, parts: tuple[str, ...], kind: MemberKind, target: str | None
    ) -> None:
        node = self._root
        for depth, part in enumerate(parts[:-1]):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = self._new_node(MemberKind.IMPLIED_DIR)
            elif child.kind in (MemberKind.FILE, MemberKind.SYMLINK):
                # Writing through a link is how a "safe" link becomes an
                # escape; through a file it cannot work. Refuse both.
                prefix = "/".join(parts[: depth + 1])
                raise InvalidArchive(
                    f"member {name!r}: path goes through the {child.kind.value} {prefix!r}"
                )
            node = child
        last = parts[-1]
        existing = node.children.get(last)
        if existing is None:
            node.children[last] = self._new_node(kind, target)
        elif existing.kind is MemberKind.IMPLIED_DIR and kind is MemberKind.DIR:
            existing.kind = MemberKind.DIR
        elif existing.kind is MemberKind.IMPLIED_DIR:
            raise InvalidArchive(
                f"member {name!r}: {kind.value} where earlier members put a directory"
            )
        else:
            raise InvalidArchive(f"member {name!r}: duplicate entry in the archive")

    def _new_node(self, kind: MemberKind, target: str | None = None) -> MemberNode:
        self._entries += 1
        if self._entries > self.limits.max_members:
            raise InvalidArchive(
                f"archive has more than {self.limits.max_members} entries"
                " (directories implied by paths included)"
            )
        return MemberNode(kind, target)

    def _check_link_stays_inside(self, name: str, parts: tuple[str, ...]) -> None:
        """Resolve the link as the kernel would, following the archive's other links.

        Components the archive does not hold are taken lexically: at run time
        they do not exist, so this errs on the side of refusing.
        """
        node = self._root
        stack: list[MemberNode | None] = [node]
        for part in parts[:-1]:
            node = node.children[part]
            stack.append(node)
        link = node.children[parts[-1]]
        assert link.target is not None
        pending = list(reversed(link.target.split("/")))
        hops = 0
        while pending:
            self._link_steps += 1
            if self._link_steps > _MAX_LINK_STEPS:
                raise InvalidArchive("symbolic links are too many or too long to check")
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) == 1:
                    raise InvalidArchive(
                        f"member {name!r}: symbolic link to {link.target[:200]!r}"
                        " leaves the archive root"
                    )
                stack.pop()
                continue
            parent = stack[-1]
            child = parent.children.get(part) if parent is not None else None
            if child is not None and child.kind is MemberKind.SYMLINK:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise InvalidArchive(
                        f"member {name!r}: too many levels of symbolic links (a loop?)"
                    )
                assert child.target is not None
                pending.extend(reversed(child.target.split("/")))
                continue
            stack.append(child)
