"""command: run a program (no shell) and record its exit code, duration and output size.

Metrics ``exit_code``, ``duration_ms``, ``stdout_bytes``, ``stderr_bytes``,
``output_bytes``; outputs ``exit_code`` and, with ``capture``, the tails of
``stdout`` and ``stderr``. The working directory is the run's (the tarball
root). Metrics are recorded before an exit-code check fails the plugin.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

TAIL_CHARS = 65_536


def run(context: Any, config: dict[str, Any]) -> dict[str, Any]:
    argv = config["argv"]
    timeout = config.get("timeout_s", 60)
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            input=config.get("stdin", "").encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **config.get("env", {})},
            check=False,
        )
    except FileNotFoundError:
        raise context.Failed(f"command not found: {argv[0]!r}") from None
    except subprocess.TimeoutExpired:
        raise context.Failed(f"{argv[0]!r} did not finish within {timeout} s") from None
    except OSError as exc:
        raise context.Failed(f"cannot start {argv[0]!r}: {exc}") from None
    duration_ms = round((time.monotonic() - started) * 1000, 3)
    context.metric("exit_code", done.returncode)
    context.metric("duration_ms", duration_ms)
    context.metric("stdout_bytes", len(done.stdout))
    context.metric("stderr_bytes", len(done.stderr))
    context.metric("output_bytes", len(done.stdout) + len(done.stderr))
    expected = config.get("expect_exit_code", 0)
    if expected is not None and done.returncode != expected:
        tail = done.stderr.decode("utf-8", "replace").strip()[-500:]
        raise context.Failed(
            f"{argv[0]!r} exited with {done.returncode} (expected {expected})"
            + (f": {tail}" if tail else "")
        )
    outputs: dict[str, Any] = {"exit_code": done.returncode}
    if config.get("capture"):
        outputs["stdout"] = done.stdout.decode("utf-8", "replace")[-TAIL_CHARS:]
        outputs["stderr"] = done.stderr.decode("utf-8", "replace")[-TAIL_CHARS:]
    return {"outputs": outputs}
