"""Configuration: paths and the data folder, settings, secrets, file and logging helpers.

One flat namespace for the rest of the app (``from rlhf_desktop import config``;
``config.data_dir()``, ``config.load_settings()``, ``config.get_secret(...)``); the parts:

* :mod:`.paths` — the data folder (``$RLHF_DESKTOP_HOME`` ← the folder chosen in Settings,
  remembered Qt-free in ``location.json`` ← the platform default) and resource paths;
* :mod:`.settings` — :class:`Settings` and ``settings.json`` (versioned);
* :mod:`.secrets` — the documented key lookup order and redaction;
* :mod:`.files` — crash-safe writes; :mod:`.logs` — redacting log setup.
"""

from __future__ import annotations

from rlhf_desktop.config.files import atomic_write_bytes, fsync_dir
from rlhf_desktop.config.logs import RedactingFormatter, setup_logging
from rlhf_desktop.config.paths import (
    APP_NAME,
    DB_FILENAME,
    EMBEDDER_PACKAGE,
    GGUF_FILENAME,
    GGUF_PACKAGE,
    HOME_ENV,
    ConfigError,
    bundle_root,
    data_dir,
    db_path,
    default_data_dir,
    default_embedder_dir,
    default_gguf_path,
    is_frozen,
    location_file,
    logs_dir,
    models_dir,
    remember_data_dir,
    remembered_data_dir,
    resource_path,
    set_data_dir,
)
from rlhf_desktop.config.secrets import (
    KEYRING_SERVICE,
    SECRET_NAMES,
    SECRETS_FILENAME,
    env_file_values,
    get_secret,
    known_secret_values,
    lookup,
    lookup_origin,
    redact,
    reload_env_files,
    remember_secret,
    store_secret,
)
from rlhf_desktop.config.settings import (
    PROVIDERS,
    SETTINGS_FILENAME,
    SETTINGS_VERSION,
    Settings,
    load_settings,
    save_settings,
    settings_path,
)

__all__ = [
    "APP_NAME", "DB_FILENAME", "EMBEDDER_PACKAGE", "GGUF_FILENAME", "GGUF_PACKAGE", "HOME_ENV",
    "KEYRING_SERVICE", "PROVIDERS", "SECRETS_FILENAME", "SECRET_NAMES", "SETTINGS_FILENAME",
    "SETTINGS_VERSION", "ConfigError", "RedactingFormatter", "Settings", "atomic_write_bytes",
    "bundle_root", "data_dir", "db_path", "default_data_dir", "default_embedder_dir",
    "default_gguf_path", "env_file_values", "fsync_dir", "get_secret", "is_frozen",
    "known_secret_values", "load_settings", "location_file", "logs_dir", "lookup",
    "lookup_origin",
    "models_dir", "redact", "reload_env_files", "remember_data_dir", "remember_secret",
    "remembered_data_dir", "resource_path", "save_settings", "set_data_dir", "settings_path",
    "setup_logging", "store_secret",
]
