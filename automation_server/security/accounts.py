"""Organizations and API keys: creating them and authenticating requests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from automation_server.audit import record
from automation_server.db.engine import Database
from automation_server.db.models import ApiKey, Organization
from automation_server.errors import Forbidden, NotFound, Unauthorized
from automation_server.ids import new_id, utcnow
from automation_server.security.keys import (
    Scope,
    generate_key,
    parse_key,
    scope_allows,
    secret_matches,
)

# Writing last_used_at on every request would make every read a write; once a
# minute per key is precise enough for "last use".
LAST_USED_RESOLUTION_S = 60.0


@dataclass(frozen=True)
class Caller:
    """Who is asking: every service call is scoped to ``org_id``."""

    org_id: str
    key_id: str
    key_prefix: str
    scope: Scope

    @property
    def actor(self) -> str:
        return f"key:{self.key_prefix}"

    @classmethod
    def system(cls, org_id: str) -> Caller:
        """The server acting on an organization's behalf (scheduler, auto-promotion)."""
        return cls(org_id=org_id, key_id="system", key_prefix="system", scope="admin")

    def require(self, needed: Scope) -> None:
        if not scope_allows(self.scope, needed):
            raise Forbidden(f"this key has scope '{self.scope}'; the action needs '{needed}'")


@dataclass(frozen=True)
class CreatedKey:
    plaintext: str
    key_id: str
    org_id: str
    prefix: str
    scope: Scope


def ensure_organization(db: Database, name: str) -> str:
    """The id of the organization called ``name``, created if needed."""
    with db.read() as session:
        org_id = session.scalar(select(Organization.id).where(Organization.name == name))
    if org_id:
        return org_id
    try:
        with db.write() as session:
            org = Organization(id=new_id(), name=name, created_at=utcnow())
            session.add(org)
        return org.id
    except IntegrityError:  # created concurrently by another process
        with db.read() as session:
            return session.scalars(select(Organization.id).where(Organization.name == name)).one()


def create_key(
    db: Database, org_id: str, scope: Scope, name: str | None = None, actor: str = "cli"
) -> CreatedKey:
    new = generate_key()
    with db.write() as session:
        key = ApiKey(
            id=new_id(),
            org_id=org_id,
            prefix=new.prefix,
            secret_hash=new.secret_hash,
            scope=scope,
            name=name,
            created_at=utcnow(),
        )
        session.add(key)
        record(
            session,
            org_id=org_id,
            actor=actor,
            action="key.create",
            resource_type="key",
            resource_id=key.id,
            after={"prefix": key.prefix, "scope": scope, "name": name},
        )
    return CreatedKey(new.plaintext, key.id, org_id, new.prefix, scope)


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Caller`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._last_touch: dict[str, float] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthorized()
        scheme, _, token = authorization.partition(" ")
        parsed = parse_key(token.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            raise Unauthorized(
                "malformed API key: send 'Authorization: Bearer ak_<prefix>_<secret>'"
            )
        prefix, secret = parsed
        with self._db.read() as session:
            key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
        if key is None or key.revoked_at is not None or not secret_matches(secret, key.secret_hash):
            raise Unauthorized("invalid or revoked API key")
        self._touch(key.id)
        return Caller(org_id=key.org_id, key_id=key.id, key_prefix=key.prefix, scope=key.scope)  # type: ignore[arg-type]

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_touch.get(key_id, -LAST_USED_RESOLUTION_S) < LAST_USED_RESOLUTION_S:
                return
            self._last_touch[key_id] = now
        with self._db.write() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


def list_keys(db: Database, org_id: str) -> list[ApiKey]:
    with db.read() as session:
        return list(
            session.scalars(
                select(ApiKey)
                .where(ApiKey.org_id == org_id)
                .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
            )
        )


def revoke_key(db: Database, org_id: str, key_id: str, actor: str) -> None:
    """Revoke a key of the organization; it fails at once on every process."""
    with db.write() as session:
        key = session.scalars(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == org_id).with_for_update()
        ).one_or_none()
        if key is None:
            raise NotFound(f"no API key with id '{key_id}'")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            record(
                session,
                org_id=org_id,
                actor=actor,
                action="key.revoke",
                resource_type="key",
                resource_id=key.id,
                before={"prefix": key.prefix, "scope": key.scope, "name": key.name},
            )
