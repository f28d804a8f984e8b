"""Encryption of secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``AUTOMATION_SECRET_KEY``; on the embedded default it is
generated on first start into ``<data dir>/secret.key`` with mode 0600. A
:class:`SecretBox` built with older keys too can still decrypt values written
under them, which is what key rotation needs.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from automation_server.errors import AutomationError

KEY_FILE = "secret.key"


class SecretKeyError(AutomationError):
    """The secret key is missing or cannot decrypt the stored secrets."""

    code = "secret_key_error"


class SecretBox:
    def __init__(self, key: str, *older: str) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in (key, *older)])
        except ValueError as exc:
            raise SecretKeyError(
                "AUTOMATION_SECRET_KEY must be a Fernet key (32 url-safe base64 bytes); "
                "generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with the configured key"
            ) from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the first (newest) key."""
        return self._fernet.rotate(token.encode()).decode()


def split_keys(keys: str) -> list[str]:
    """``NEW[,OLD...]`` as a list, newest first."""
    return [k.strip() for k in keys.split(",") if k.strip()]


def box_from(keys: str) -> SecretBox:
    """A box from ``new[,old...]``: encrypts with the first key, decrypts with any."""
    parts = split_keys(keys)
    if not parts:
        raise SecretKeyError("AUTOMATION_SECRET_KEY is empty")
    return SecretBox(parts[0], *parts[1:])


def write_key_file(data_dir: Path, key: str) -> Path:
    """Replace the data directory's key file atomically (mode 0600)."""
    path = data_dir / KEY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def key_source(configured: str | None, data_dir: Path) -> str:
    """Where a process's key comes from, for messages (never the key itself)."""
    if configured:
        return "AUTOMATION_SECRET_KEY"
    return f"{data_dir / KEY_FILE}, because AUTOMATION_SECRET_KEY is not set"


def load_or_create_key(configured: str | None, data_dir: Path) -> str:
    """The configured key, else the one in the data directory, else a new one saved there."""
    if configured:
        return configured
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    # O_EXCL: if two processes start at once, exactly one writes the key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
