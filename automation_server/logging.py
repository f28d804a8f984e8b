"""structlog set-up: JSON lines (or readable lines at a terminal) with stable event
names and bound ids.

Components get a logger with :func:`get_logger` and bind ``run_id``,
``automation_id`` and ``variant`` through :func:`bind_run` (context variables), so
every line a worker writes while running a run carries them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


def use_console(fmt: str, stream: Any) -> bool:
    """``auto`` (the default): readable lines for a person at a terminal, JSON lines for
    whatever collects the logs otherwise."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return fmt == "console"


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the standard library root logger once per process."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if use_console(fmt, sys.stderr)
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (uvicorn, alembic) log through the standard library: keep them quiet.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")


def get_logger(component: str) -> Any:
    """A logger for one component (``api``, ``worker``, ``scheduler``...)."""
    return structlog.get_logger(component=component)


@contextmanager
def bind_run(run_id: str, automation_id: str, variant: str | None) -> Iterator[None]:
    """Bind a run's ids to every log line written inside the block (this thread/task)."""
    tokens = structlog.contextvars.bind_contextvars(
        run_id=run_id, automation_id=automation_id, variant=variant
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
