"""Three scheduler processes on PostgreSQL: every tick exactly once, even when one is killed."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from automation_server.db.models import Automation, Run
from automation_server.services import build_services
from tests.e2e.processes import process_env, start
from tests.support import live_server, settings_for, targz

AUTOMATIONS = 20
INTERVAL_S = 2
DURATION_S = 14


def test_three_schedulers_fire_every_tick_once_despite_sigkill(tmp_path: Path, pg_url: str) -> None:
    data_dir = tmp_path / "var"
    services = build_services(settings_for(data_dir, pg_url))
    env = process_env(data_dir, pg_url, AUTOMATION_POLL_S="1")
    with live_server(services) as server:
        http = server.client(server.new_key())
        ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
        ids = [
            http.post(
                "/v1/automations",
                json={
                    "name": f"tick-{i}",
                    "tarball": ref,
                    "trigger": {"type": "interval", "seconds": INTERVAL_S},
                    "concurrency": {"max_running": 1000, "on_overlap": "queue"},
                },
            ).json()["id"]
            for i in range(AUTOMATIONS)
        ]
        schedulers = [start(["scheduler"], env, tmp_path, f"scheduler{i}") for i in range(3)]
        try:
            time.sleep(DURATION_S / 2)
            schedulers[0].signal(signal.SIGKILL)
            time.sleep(DURATION_S / 2)
        finally:
            for proc in schedulers[1:]:
                assert proc.stop() == 0
            schedulers[0].popen.wait()
        with services.db.read() as session:
            anchors = dict(session.execute(select(Automation.id, Automation.schedule_anchor)).all())
            nexts = dict(session.execute(select(Automation.id, Automation.next_run_at)).all())
            rows = session.execute(select(Run.automation_id, Run.scheduled_for)).all()
            lateness = [
                (r.created_at - r.scheduled_for).total_seconds()
                for r in session.scalars(select(Run))
            ]
    services.close()
    fired: dict[str, list[datetime]] = defaultdict(list)
    for automation_id, tick in rows:
        fired[automation_id].append(tick)
    for automation_id in ids:
        ticks = sorted(fired[automation_id])
        assert len(ticks) == len(set(ticks)), "a tick fired twice"
        expected_first = anchors[automation_id] + timedelta(seconds=INTERVAL_S)
        expected = [expected_first + timedelta(seconds=INTERVAL_S * k) for k in range(len(ticks))]
        assert ticks == expected, "a tick is missing"
        assert nexts[automation_id] == expected[-1] + timedelta(seconds=INTERVAL_S)
        assert len(ticks) >= DURATION_S // INTERVAL_S - 2
    # Ticks are fired when due (the killed scheduler's lock is released at once by PostgreSQL).
    assert sorted(lateness)[len(lateness) // 2] < 0.5
