"""Run the benchmarks: ``python -m bench [--quick] [name ...]``; results in bench/results/."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHMARKS = [
    "runs_throughput",
    "sandbox_overhead",
    "scheduler_latency",
    "experiments_summary",
    "environments",
    "events",
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (under 3 minutes)")
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=[])
    args = parser.parse_args()
    from automation_server.logging import configure_logging

    configure_logging("warning", "json")
    for name in args.names or BENCHMARKS:
        print(f"== {name} ({'quick' if args.quick else 'full'})", flush=True)
        result = importlib.import_module(f"bench.{name}").run(args.quick)
        print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
