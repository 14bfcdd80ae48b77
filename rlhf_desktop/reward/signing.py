"""HMAC-SHA256 signatures for model files, keyed by a per-installation secret.

The key lives in the data folder under ``keys/`` (mode 0600), outside every model folder, so a
model folder copied from elsewhere, or a file replaced in it, does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from rlhf_desktop import config

KEY_FILENAME = "model-signing.key"


def key_path() -> Path:
    """Where this installation's signing key is kept."""
    folder = config.data_dir() / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / KEY_FILENAME


def load_key(create: bool) -> bytes | None:
    """The signing key; created (32 random bytes, 0600) when ``create`` and missing."""
    path = key_path()
    if path.exists():
        return path.read_bytes()
    if not create:
        return None
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


def sign(data: bytes, key: bytes) -> str:
    """Hex HMAC-SHA256 of ``data``."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str, key: bytes) -> bool:
    """Constant-time check of a signature."""
    return hmac.compare_digest(sign(data, key), signature.strip())
