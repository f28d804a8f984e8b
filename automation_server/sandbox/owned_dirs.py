"""Directories owned by one worker process, named ``<pid>-...`` under a shared root.

Several worker processes of a host share the sandbox's state directory; each
keeps its caches (extracted trees, the prepared ``/etc``) in a directory of
its own, so closing one never removes what another is using, and what a
crashed process left is removed by the next one that starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def process_dir(root: Path) -> Path:
    """A fresh directory of this process under ``root`` (0700), after clearing dead owners'."""
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    remove_dead_owners(root)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def remove_dead_owners(root: Path) -> None:
    """Remove directories left by processes that are gone (named ``<pid>-...``)."""
    for entry in root.iterdir():
        pid = entry.name.split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(entry, ignore_errors=True)
