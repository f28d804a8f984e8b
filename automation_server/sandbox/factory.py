"""Choosing the executor from the operator's ``AUTOMATION_SANDBOX`` setting."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

from automation_server.errors import SandboxError
from automation_server.sandbox.base import Executor
from automation_server.sandbox.bwrap import BwrapExecutor, BwrapSettings
from automation_server.sandbox.probe import probe_bwrap, sandbox_help
from automation_server.sandbox.unsandboxed import UnsandboxedExecutor

SandboxMode = Literal["bwrap", "none"]


def make_executor(mode: SandboxMode, **settings: Any) -> Executor:
    """The executor for ``mode``; ``settings`` are :class:`BwrapSettings` fields.

    ``bwrap`` refuses to start (SandboxError, with the fix) when bubblewrap is
    missing or cannot create user namespaces here: code never silently runs
    unsandboxed. ``none`` only takes ``grace_s``.
    """
    if mode == "none":
        return UnsandboxedExecutor(grace_s=float(settings.get("grace_s", 5.0)))
    if mode != "bwrap":
        raise SandboxError(f"unknown sandbox {mode!r}: use 'bwrap' or 'none'")
    known = {f.name for f in dataclasses.fields(BwrapSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SandboxError(f"unknown bubblewrap settings: {', '.join(unknown)}")
    config = BwrapSettings(**settings)
    uid = config.uid_base if os.geteuid() == 0 else None
    probe = probe_bwrap(config.bwrap_path, uid)
    if not probe.works:
        raise SandboxError(sandbox_help(probe.error or "unknown error"))
    return BwrapExecutor(config)
