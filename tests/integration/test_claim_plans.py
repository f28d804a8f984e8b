"""The claim's work is bounded by the runs it can take, not by the backlog or history.

The claim's statements are captured as the queue sends them and explained by the
database itself: on SQLite every access to ``runs`` must be an index seek or a
scan of the small partial claim indexes (queued or running runs only), never a
scan of the table or of a history index; on PostgreSQL the rows actually read
from ``runs`` (EXPLAIN ANALYZE, rolled back) must stay far below the backlog.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from automation_server.statuses import RunStatus
from tests.integration.queue_support import QueueKit

BACKLOG = 300
HISTORY = 200
CLAIM_INDEXES = ("ix_runs_automation_queued", "ix_runs_automation_running")


def _claim_statements(services: Any, slots: int) -> list[tuple[str, Any]]:
    """The SQL (and its parameters) one claim sends, after the claim is rolled back."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "runs" in statement and not statement.lstrip().upper().startswith("BEGIN"):
            sent.append((statement, params))

    engine = services.db.engine
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        claimed = services.queue.claim("plan-probe", slots, 30)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert len(claimed) == slots
    return sent


def _backlog(services: Any) -> QueueKit:
    kit = QueueKit.make(services)
    busy = kit.automation("busy", max_running=1000)
    other = kit.automation("other")
    history = kit.dispatch(busy, HISTORY)
    kit.set_runs(history, status=RunStatus.SUCCEEDED)
    kit.dispatch(busy, BACKLOG)
    kit.dispatch(other, 3)
    return kit


def _sqlite_runs_accesses(services: Any, statement: str, params: Any) -> list[str]:
    with services.db.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    return [row[-1] for row in plan if " runs " in f" {row[-1]} "]


def _postgres_rows_read(services: Any, statement: str, params: Any) -> int:
    """Rows read from ``runs`` by all plan nodes, the statement executed and rolled back."""
    with services.db.engine.connect() as conn:
        # With statistics (autovacuum's ANALYZE soon gives them) and the table's own
        # size out of the question (this one is small), which indexes get used.
        conn.exec_driver_sql("ANALYZE runs")
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        (raw,) = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params).one()
        conn.rollback()
    plan = raw if isinstance(raw, list) else json.loads(raw)
    total = 0
    stack = [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == "runs":
            total += int(node["Actual Rows"]) * int(node["Actual Loops"])
            total += int(node.get("Rows Removed by Filter", 0)) * int(node["Actual Loops"])
        stack.extend(node.get("Plans", []))
    return total


def test_a_claim_reads_a_few_rows_whatever_the_backlog_and_history(services: Any) -> None:
    _backlog(services)
    statements = _claim_statements(services, slots=2)
    assert statements, "the claim sent no statement about runs"
    for statement, params in statements:
        if services.db.is_sqlite:
            for access in _sqlite_runs_accesses(services, statement, params):
                seek = access.startswith("SEARCH")
                claim_index = any(name in access for name in CLAIM_INDEXES)
                assert seek or claim_index, f"{access!r} in:\n{statement}"
        else:
            read = _postgres_rows_read(services, statement, params)
            assert read < 50, f"{read} rows of runs read by:\n{statement}"
