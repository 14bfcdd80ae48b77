"""Secret and variable lookup, and redaction of secrets from every text that leaves.

Lookup order, first hit wins (documented in the README):

1. the process environment (``AZURE_OPENAI_API_KEY``, ``OPENAI_API_KEY``, ...);
2. a ``.env`` file in the current folder, then one in the data folder (python-dotenv, read
   once per process and folder without touching ``os.environ``;
   :func:`reload_env_files` after a change);
3. the OS keyring (service ``rlhf-desktop``), when a backend exists;
4. the owner-only file ``secrets.json`` (mode 0600) in the data folder.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from rlhf_desktop.config.files import atomic_write_bytes
from rlhf_desktop.config.paths import data_dir

SECRETS_FILENAME = "secrets.json"
KEYRING_SERVICE = "rlhf-desktop"
SECRET_NAMES: tuple[str, ...] = ("AZURE_OPENAI_API_KEY", "OPENAI_API_KEY")

log = logging.getLogger(__name__)

_ENV_FILES: dict[tuple[Path, Path], dict[str, str]] = {}


def reload_env_files() -> None:
    """Forget the ``.env`` values read so far (after the user changed a file)."""
    _ENV_FILES.clear()


def env_file_values() -> dict[str, str]:
    """Values from ``.env`` in the current folder, then the data folder (first wins); read
    once per pair of folders."""
    key = (Path.cwd(), data_dir())
    if key not in _ENV_FILES:
        _ENV_FILES[key] = _read_env_files(*key)
    return dict(_ENV_FILES[key])


def _read_env_files(cwd: Path, data: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    merged: dict[str, str] = {}
    for candidate in (cwd / ".env", data / ".env"):
        if candidate.is_file():
            try:
                values = dotenv_values(candidate)
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("could not read %s: %s", candidate, type(exc).__name__)
                continue
            for key, value in values.items():
                if value is not None and key not in merged:
                    merged[key] = value
    return merged


ENVIRONMENT = "the environment"
ENV_FILE = ".env"


def lookup(name: str, env_values: Mapping[str, str] | None = None) -> str | None:
    """A configuration variable from the environment or a ``.env`` file (not secrets-only)."""
    return lookup_origin(name, env_values)[0]


def lookup_origin(name: str,
                  env_values: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """:func:`lookup`'s value and where it came from: :data:`ENVIRONMENT`, :data:`ENV_FILE`
    or "" (not set); for saying so beside a setting the variable wins over."""
    value = os.environ.get(name)
    if value:
        return value, ENVIRONMENT
    values = env_file_values() if env_values is None else env_values
    value = values.get(name)
    return (value, ENV_FILE) if value else (None, "")


def _secrets_file() -> Path:
    return data_dir() / SECRETS_FILENAME


def _read_secrets_file() -> dict[str, str]:
    path = _secrets_file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        log.warning("secrets file %s is not valid JSON; ignoring it", path)
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _keyring_get(name: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
        if _is_null_keyring(backend):
            return None
        return keyring.get_password(KEYRING_SERVICE, name)
    except (KeyringError, RuntimeError, OSError):
        return None


def _is_null_keyring(backend: object) -> bool:
    name = (type(backend).__module__ + "." + type(backend).__name__).lower()
    if "fail" in name or "null" in name:
        return True
    if "chainer" in name and not getattr(backend, "backends", []):
        return True
    priority = getattr(backend, "priority", 1)
    return isinstance(priority, (int, float)) and priority <= 0


def get_secret(name: str) -> str | None:
    """A secret by the documented lookup order (see the module docstring).

    Every value returned is remembered for redaction from logs.
    """
    value = lookup(name) or _keyring_get(name) or _read_secrets_file().get(name) or None
    remember_secret(value)
    return value


def store_secret(name: str, value: str) -> str:
    """Store a secret in the OS keyring, else in the 0600 file. Returns where it went."""
    remember_secret(value)
    try:
        import keyring
        from keyring.errors import KeyringError

        backend = keyring.get_keyring()
        if not _is_null_keyring(backend):
            keyring.set_password(KEYRING_SERVICE, name, value)
            return "keyring"
    except (ImportError, KeyringError, RuntimeError, OSError):
        pass
    path = _secrets_file()
    data = _read_secrets_file()
    data[name] = value
    atomic_write_bytes(path, json.dumps(data).encode("utf-8"), mode=stat.S_IRUSR | stat.S_IWUSR)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return "file"


_SEEN_SECRETS: set[str] = set()


def remember_secret(value: str | None) -> None:
    """Make sure ``value`` is redacted from every log line from now on."""
    if value and len(value) >= 4:
        _SEEN_SECRETS.add(value)


def known_secret_values() -> list[str]:
    """Every secret value configured now or seen in this process, for redaction."""
    for name in SECRET_NAMES:
        remember_secret(get_secret(name))
    return sorted(_SEEN_SECRETS, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """Replace every known secret value in ``text`` by ``***``."""
    for value in known_secret_values() if secrets is None else secrets:
        if value:
            text = text.replace(value, "***")
    return text


