"""Tuned versions of the built-in chat model, as the built-in provider loads them.

``rlhf-desktop tune`` (:mod:`rlhf_desktop.tune.versions`) writes each version to
``<data folder>/chat_models/vNNNN/``: ``adapter.gguf`` (a LoRA adapter in GGUF) and
``manifest.json`` (``base.sha256`` names the GGUF file it was trained on). llama.cpp applies
the adapter on top of that same base file; version 0 is the base itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rlhf_desktop import config
from rlhf_desktop.providers.errors import ProviderConfigError

CHAT_MODELS_DIR = "chat_models"
ADAPTER_FILE = "adapter.gguf"
MANIFEST_FILE = "manifest.json"

_SHA256: dict[tuple[str, int, float], str] = {}


def chat_models_dir() -> Path:
    """``chat_models/`` in the data folder (not created here)."""
    return config.data_dir() / CHAT_MODELS_DIR


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for this process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def adapter_for(version: int, base: Path) -> Path:
    """The adapter of chat-model ``version`` after checking it was trained on ``base``.

    Raises :class:`ProviderConfigError` saying what to choose instead."""
    folder = chat_models_dir() / f"v{version:04d}"
    adapter = folder / ADAPTER_FILE
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not adapter.is_file():
        raise ProviderConfigError(
            f"Chat model v{version} is not in {chat_models_dir()} (or is incomplete). Choose "
            "the base model (chat_model_version 0) or another version: rlhf-desktop tune --list.")
    wanted = (manifest.get("base") or {}).get("sha256")
    if wanted != file_sha256(base):
        raise ProviderConfigError(
            f"Chat model v{version} was tuned on another base file than {base.name}; choose "
            "the base model (chat_model_version 0) or tune again on this one.")
    return adapter
