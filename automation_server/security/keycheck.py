"""The deployment's secret key check value: every process must hold the same key.

Processes on several hosts share only the database and the object store, so a
worker started with another ``AUTOMATION_SECRET_KEY`` (or none, which makes it
generate its own) would claim runs whose secrets it cannot decrypt. The
database therefore keeps a check value of the deployment's key: an HMAC-SHA256
of a fixed text under the key, which tells whether two keys are equal without
revealing either. The first server process of a fresh database records it;
every later one must hold that key among its keys (``NEW,OLD`` during a
rotation) or it refuses to start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import Automation, AutomationSecret, DeploymentSetting
from automation_server.security.crypto import SecretBox, SecretKeyError

CHECK_NAME = "secret_key_check"
_CHECK_TEXT = b"automation-server: secret key check value, version 1"


def check_value(key: str) -> str:
    """The key's check value (``v1:`` + hex HMAC); equal keys give equal values."""
    raw = base64.urlsafe_b64decode(key.encode())
    return "v1:" + hmac.new(raw, _CHECK_TEXT, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class KeyCheck:
    """How a process's keys relate to the deployment's."""

    outcome: Literal["recorded", "matched", "unset"]
    #: Position of the deployment's key among the process's keys (0 = the newest).
    key_index: int | None


def mismatch(source: str) -> SecretKeyError:
    return SecretKeyError(
        f"the secret key of this process ({source}) is not this deployment's key: the "
        "database was set up with another one, so this process could not decrypt its "
        "secrets. Set the same AUTOMATION_SECRET_KEY on every api, worker and scheduler "
        "process (during a rotation: NEW,OLD on all of them) and start this one again."
    )


def inspect_key(db: Database, keys: Sequence[str], source: str) -> KeyCheck:
    """Compare without writing (``doctor``); raises when the keys do not match."""
    with db.read() as session:
        stored = session.get(DeploymentSetting, CHECK_NAME)
        if stored is None:
            index = _decrypting_key(session, keys, source)
            return KeyCheck("unset", index)
        return KeyCheck("matched", _matching_index(stored.value, keys, source))


def verify_key(db: Database, keys: Sequence[str], source: str) -> KeyCheck:
    """Refuse (SecretKeyError) unless one of ``keys`` is the deployment's key; on a fresh
    database, record the key (the one that decrypts the stored secrets, if any)."""
    with db.write() as session:
        stored = session.get(DeploymentSetting, CHECK_NAME)
        if stored is not None:
            return KeyCheck("matched", _matching_index(stored.value, keys, source))
        index = _decrypting_key(session, keys, source)
    try:
        with db.write() as session:
            session.add(_setting(check_value(keys[index or 0])))
    except IntegrityError:
        # Another process recorded its key first: ours must be that one.
        return verify_key(db, keys, source)
    return KeyCheck("recorded", index or 0)


def record_key(session: Session, key: str) -> None:
    """Make ``key`` the deployment's key (inside the rotation's transaction)."""
    stored = session.get(DeploymentSetting, CHECK_NAME)
    if stored is None:
        session.add(_setting(check_value(key)))
    else:
        stored.value = check_value(key)
        stored.updated_at = datetime.now(UTC)


def _setting(value: str) -> DeploymentSetting:
    return DeploymentSetting(name=CHECK_NAME, value=value, updated_at=datetime.now(UTC))


def _matching_index(stored: str, keys: Sequence[str], source: str) -> int:
    for index, key in enumerate(keys):
        if hmac.compare_digest(check_value(key), stored):
            return index
    raise mismatch(source)


def _decrypting_key(session: Session, keys: Sequence[str], source: str) -> int | None:
    """Before any check value exists (a database from before this check): the key that
    decrypts a stored secret, None when nothing is stored yet."""
    sample = session.scalars(select(AutomationSecret.ciphertext).limit(1)).first()
    if sample is None:
        sample = session.scalars(
            select(Automation.webhook_secret).where(Automation.webhook_secret.is_not(None)).limit(1)
        ).first()
    if sample is None:
        return None
    for index, key in enumerate(keys):
        try:
            SecretBox(key).decrypt(sample)
            return index
        except SecretKeyError:
            continue
    raise mismatch(source)
