"""The CLI quick start of the README, run as written against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import require_bwrap
from tests.e2e.sdk_server import ROOT, serve

README = ROOT / "README.md"
MARKER = "<!-- quickstart:"


def quickstart_block() -> str:
    """The first ```sh block after the quick-start marker."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index(MARKER) :]
    found = re.search(r"```sh\n(.*?)```", after, re.S)
    assert found, "no ```sh block after the quick-start marker"
    return found.group(1)


def test_readme_quickstart_deploys_dispatches_and_lists(tmp_path: Path) -> None:
    require_bwrap()  # the quick start runs on the default sandbox, as `make serve` does
    script = quickstart_block()
    assert "automation deploy" in script and "--wait" in script
    with serve(tmp_path, AUTOMATION_SANDBOX="bwrap") as served:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATION_")}
        env |= {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "AUTOMATION_URL": served.base_url,
            "AUTOMATION_API_KEY": served.new_key("acme"),
            "COLUMNS": "200",
        }
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr + served.log()
        out = done.stdout
        assert "created automation ab-script" in out
        assert "succeeded" in out and "latency_ms" in out and "total" in out
        # `runs` lists the run that `dispatch --wait` made, under the automation's name.
        run_id = re.search(r"run\s+([0-9a-f-]{36})", out)
        assert run_id and out.count(run_id.group(1)) == 2

        again = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.split("\nautomation dispatch")[0]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 0 and "up to date (revision 1)" in again.stdout
