"""Alembic environment for PostgreSQL and SQLite.

Run through ``automation-server migrate`` (which sets the URL from
``AUTOMATION_DATABASE_URL``), or ``alembic`` with ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from automation_server.db.engine import make_engine
from automation_server.db.models import Base

# Any 64-bit number unique to this project: serialises concurrent migrators.
MIGRATION_LOCK_ID = 7_412_903_311


def _url() -> str:
    url = context.config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get(
        "url"
    )
    if not url:
        raise SystemExit("no database URL: use 'automation-server migrate'")
    return str(url)


def _check_foreign_keys(connection: Connection) -> None:
    """With the checks off during the rebuilds, make sure no row lost its parent
    (the transaction, and so the migration, is undone if one did)."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left rows without their parent: {broken[:5]}")


def run_migrations_online() -> None:
    engine = make_engine(_url(), pool_size=1)
    with engine.connect() as connection:
        is_pg = connection.dialect.name == "postgresql"
        if is_pg:
            # Several processes (api, worker, scheduler) may start at once.
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
            connection.commit()
        if not is_pg:
            # Batch operations rebuild a table (copy, drop, rename); with foreign keys
            # on, dropping ``automations`` would fail or cascade into every table that
            # points at it. The pragma only takes effect outside a transaction, so it
            # goes to the driver before SQLAlchemy's first BEGIN.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=not is_pg,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if not is_pg:
                _check_foreign_keys(connection)
        if not is_pg:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
        if is_pg:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()


run_migrations_online()
