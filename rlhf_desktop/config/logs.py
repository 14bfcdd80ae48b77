"""Logging to stderr and a rotating file, with every secret redacted."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rlhf_desktop.config.paths import logs_dir
from rlhf_desktop.config.secrets import _SEEN_SECRETS, known_secret_values, redact


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
