"""Issue 5: sandbox overhead against a bare subprocess of the same script, same run.

Per run: the time from a cached tarball to a collected result (extract, start
bubblewrap, run, collect the report and log) against ``subprocess.run`` of the
same script; median and p95 of the ratio. Throughput: runs per second at
concurrency 1, 2 and 4, each against bare subprocesses at the same concurrency.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from automation_server.sandbox.base import RunSpec
from automation_server.sandbox.factory import make_executor
from automation_server.storage.archive import safe_extract
from automation_server.worker.execution import SDK_DIR, sandbox_limits
from bench.common import TRIVIAL_SCRIPT, percentile, targz, write_results

SCRIPT = "from automation_sdk import report\nreport.metric('ok', 1)\nprint('ok')\n"


def _bare_once(workdir: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["/usr/bin/python3", "main.py"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
        env={"PYTHONPATH": str(SDK_DIR), "AUTOMATION_OUTPUT_DIR": str(workdir)},
    )
    return time.perf_counter() - start


def _sandbox_once(executor: Any, tarball: Path, root: Path, index: int) -> float:
    """From cached tarball to collected result."""
    run_root = root / f"r{index}"
    start = time.perf_counter()
    safe_extract(tarball, run_root / "src")
    (run_root / "out").mkdir()
    payload = run_root / "payload.json"
    payload.write_text("{}")
    spec = RunSpec(
        run_id=f"bench-{index}",
        workdir=run_root / "src",
        output_dir=run_root / "out",
        payload_file=payload,
        argv=["python3", "main.py"],
        env={"AUTOMATION_RUN_ID": f"bench-{index}"},
        timeout_s=60,
        limits=sandbox_limits({}),
        pythonpath_dir=SDK_DIR,
    )
    outcome = executor.run(spec, cancel=threading.Event())
    (run_root / "out" / "report.jsonl").read_bytes()
    elapsed = time.perf_counter() - start
    shutil.rmtree(run_root, ignore_errors=True)
    if outcome.status != "succeeded":
        raise RuntimeError(f"sandboxed run failed: {outcome.error} {outcome.log[-500:]!r}")
    return elapsed


def _throughput(fn: Any, n: int, concurrency: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(fn, range(n)))
    return n / (time.perf_counter() - start)


def run(quick: bool) -> dict[str, Any]:
    n = 60 if quick else 300
    executor = make_executor("bwrap", grace_s=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tarball = root / "t.tar.gz"
        tarball.write_bytes(targz({"main.py": SCRIPT}))
        bare_dir = root / "bare"
        bare_dir.mkdir()
        (bare_dir / "main.py").write_text(SCRIPT)
        for i in range(5):  # warm caches
            _bare_once(bare_dir)
            _sandbox_once(executor, tarball, root, -1 - i)
        pairs = []
        for i in range(n):  # interleaved so machine noise hits both alike
            pairs.append((_bare_once(bare_dir), _sandbox_once(executor, tarball, root, i)))
        ratios = [s / b for b, s in pairs]
        throughput = {}
        for c in (1, 2, 4):
            bare_rps = _throughput(lambda _i: _bare_once(bare_dir), n, c)
            offset = 1000 * c
            box_rps = _throughput(
                lambda i, offset=offset: _sandbox_once(executor, tarball, root, offset + i), n, c
            )
            throughput[f"concurrency_{c}"] = {
                "bare_runs_per_s": round(bare_rps, 1),
                "sandbox_runs_per_s": round(box_rps, 1),
                "time_ratio": round(bare_rps / box_rps, 2),
            }
    results = {
        "runs": n,
        "mechanisms": executor.describe(),
        "bare_ms": {"p50": round(statistics.median(b for b, _ in pairs) * 1000, 2)},
        "sandbox_ms": {"p50": round(statistics.median(s for _, s in pairs) * 1000, 2)},
        "ratio": {
            "median": round(statistics.median(ratios), 2),
            "p95": round(percentile(ratios, 95), 2),
        },
        "throughput": throughput,
        "note": f"trivial script: {TRIVIAL_SCRIPT.strip()!r} plus an SDK report line",
    }
    path = write_results("sandbox_overhead", {"quick": quick, **results})
    return {"file": str(path), **results}
