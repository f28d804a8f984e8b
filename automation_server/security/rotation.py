"""Re-encrypting every stored secret under a new key (``rotate-secret-key``)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet
from sqlalchemy import select

from automation_server.db.engine import Database
from automation_server.db.models import Automation, AutomationSecret
from automation_server.security.crypto import SecretBox
from automation_server.security.keycheck import record_key


@dataclass(frozen=True)
class Rotation:
    new_key: str
    secrets: int
    webhook_secrets: int


def rotate_secrets(db: Database, old_keys: list[str], new_key: str | None = None) -> Rotation:
    """Decrypt with any old key, encrypt with the new one and make it the deployment's
    key (its check value), all in one transaction: processes holding ``NEW,OLD`` keep
    working across it, processes holding only OLD are refused from then on."""
    key = new_key or Fernet.generate_key().decode()
    box = SecretBox(key, *old_keys)
    secrets = webhooks = 0
    with db.write() as session:
        for row in session.scalars(select(AutomationSecret).with_for_update()):
            row.ciphertext = box.rotate(row.ciphertext)
            secrets += 1
        for automation in session.scalars(
            select(Automation).where(Automation.webhook_secret.is_not(None)).with_for_update()
        ):
            automation.webhook_secret = box.rotate(automation.webhook_secret or "")
            webhooks += 1
        record_key(session, key)
    return Rotation(new_key=key, secrets=secrets, webhook_secrets=webhooks)
