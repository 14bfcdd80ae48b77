"""HMAC-SHA256 signatures for model files, keyed by a per-installation secret.

The key lives in the data folder under ``keys/`` (mode 0600), outside every model folder, so a
model folder copied from elsewhere, or a file replaced in it, does not verify.

A model folder is looked up by where it lies: ``<data folder>/models/vNNNN`` is verified with
``<data folder>/keys/model-signing.key`` whatever data folder this process is configured for,
so ``TinyRewardModel.load("<data folder>/models/v0002")`` works without ``RLHF_DESKTOP_HOME``.
Looking for a key never creates a folder or a file; only :func:`load_key` with ``create=True``
(when saving) does.
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
KEYS_FOLDER = "keys"
MODELS_FOLDER = "models"


def key_path(data_folder: Path | None = None) -> Path:
    """Where the signing key of ``data_folder`` (default: this process's) is kept; no I/O."""
    folder = config.data_dir(create=False) if data_folder is None else data_folder
    return folder / KEYS_FOLDER / KEY_FILENAME


def enclosing_data_folder(model_folder: Path) -> Path | None:
    """The data folder a model folder lies in (``<data>/models/vNNNN``), if it lies in one."""
    resolved = model_folder.expanduser().resolve()
    if resolved.parent.name != MODELS_FOLDER:
        return None
    data = resolved.parent.parent
    return data if key_path(data).is_file() else None


def candidate_keys(model_folder: Path) -> list[Path]:
    """Key files that may have signed a model folder, most specific first (existing only)."""
    out: list[Path] = []
    enclosing = enclosing_data_folder(model_folder)
    if enclosing is not None:
        out.append(key_path(enclosing))
    configured = key_path()
    if configured.is_file() and all(configured.resolve() != p.resolve() for p in out):
        out.append(configured)
    return out


def load_key(create: bool) -> bytes | None:
    """This data folder's key; created (32 random bytes, 0600) when ``create`` and missing."""
    path = key_path()
    if path.exists():
        return path.read_bytes()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
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
