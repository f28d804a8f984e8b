"""The deployment's secret key check value, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from automation_server.db.engine import Database
from automation_server.security.crypto import SecretKeyError
from automation_server.security.keycheck import (
    CHECK_NAME,
    check_value,
    inspect_key,
    verify_key,
)
from automation_server.security.rotation import rotate_secrets
from automation_server.services import build_services
from tests.support import live_server, settings_for, targz

SOURCE = "AUTOMATION_SECRET_KEY"


def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url, pool_size=4)
    yield database  # type: ignore[misc]
    database.dispose()


def stored_value(db: Database) -> str | None:
    with db.read() as session:
        return session.execute(
            sa.text("SELECT value FROM deployment_settings WHERE name = :n"), {"n": CHECK_NAME}
        ).scalar_one_or_none()


def seed_secret(database_url: str, tmp_path: Path, key: str) -> None:
    """An automation with one secret encrypted under ``key``, saved through the API."""
    services = build_services(settings_for(tmp_path / "seed", database_url, secret_key=key))
    try:
        with live_server(services) as server:
            http = server.client(server.new_key())
            ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
            created = http.post(
                "/v1/automations",
                json={"name": "with-secret", "tarball": ref, "secrets": {"TOKEN": "tok"}},
            )
            assert created.status_code == 201, created.text
    finally:
        services.close()


def test_the_first_process_records_its_key_and_later_ones_must_hold_it(db: Database) -> None:
    key, other = new_key(), new_key()
    assert verify_key(db, [key], SOURCE).outcome == "recorded"
    assert stored_value(db) == check_value(key)
    assert key not in (stored_value(db) or "")
    assert verify_key(db, [key], SOURCE).outcome == "matched"
    with pytest.raises(SecretKeyError) as refused:
        verify_key(db, [other], SOURCE)
    assert "not this deployment's key" in refused.value.detail
    assert "Set the same AUTOMATION_SECRET_KEY" in refused.value.detail
    assert other not in refused.value.detail and key not in refused.value.detail
    assert stored_value(db) == check_value(key), "a refused process changes nothing"


def test_rotation_moves_the_check_value_to_the_new_key(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    old, new = new_key(), new_key()
    verify_key(db, [old], SOURCE)
    seed_secret(database_url, tmp_path, old)
    # During the window every process holds NEW,OLD: they match through OLD.
    assert verify_key(db, [new, old], SOURCE).key_index == 1
    done = rotate_secrets(db, [new, old], new)
    assert done.secrets == 1
    assert stored_value(db) == check_value(new)
    assert verify_key(db, [new, old], SOURCE).key_index == 0
    assert verify_key(db, [new], SOURCE).outcome == "matched"
    with pytest.raises(SecretKeyError):
        verify_key(db, [old], SOURCE)


def test_a_database_from_before_the_check_is_verified_by_decrypting_a_secret(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    real, wrong = new_key(), new_key()
    seed_secret(database_url, tmp_path, real)
    with pytest.raises(SecretKeyError):
        verify_key(db, [wrong], SOURCE)
    assert stored_value(db) is None, "a wrong key is never recorded"
    check = verify_key(db, [wrong, real], SOURCE)
    assert check.outcome == "recorded" and check.key_index == 1
    assert stored_value(db) == check_value(real)


def test_inspect_reads_without_recording(db: Database) -> None:
    key = new_key()
    assert inspect_key(db, [key], SOURCE).outcome == "unset"
    assert stored_value(db) is None
    verify_key(db, [key], SOURCE)
    assert inspect_key(db, [key], SOURCE).outcome == "matched"
    with pytest.raises(SecretKeyError):
        inspect_key(db, [new_key()], SOURCE)


def test_two_processes_starting_at_once_with_different_keys_never_both_win(
    db: Database,
) -> None:
    keys = [new_key() for _ in range(4)]
    barrier = threading.Barrier(len(keys))
    outcomes: dict[str, str] = {}

    def start(key: str) -> None:
        barrier.wait()
        try:
            outcomes[key] = verify_key(db, [key], SOURCE).outcome
        except SecretKeyError:
            outcomes[key] = "refused"

    threads = [threading.Thread(target=start, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [k for k, outcome in outcomes.items() if outcome == "recorded"]
    assert len(winners) == 1, outcomes
    assert sorted(outcomes.values()).count("refused") == len(keys) - 1
    assert stored_value(db) == check_value(winners[0])
