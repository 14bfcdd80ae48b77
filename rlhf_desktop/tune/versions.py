"""Chat-model versions: ``<data folder>/chat_models/vNNNN/`` with ``adapter.gguf`` and
``manifest.json`` (base file and its SHA-256, pairs used, steps, metrics, settings).

A version is a LoRA adapter that llama.cpp applies to the base GGUF it was trained on
(``Llama(model_path=base, lora_path=adapter)``). Version 0 is the base itself: rolling back
means choosing it again; nothing is deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop.config.files import publish_numbered
from rlhf_desktop.providers.chat_versions import ADAPTER_FILE, MANIFEST_FILE

_NAME = re.compile(r"^v(\d{4,})$")


class VersionError(RuntimeError):
    """A chat-model version that is missing or does not fit its base; the message says why."""


@dataclass(frozen=True)
class ChatModelVersion:
    """One tuned version of the built-in chat model."""

    version: int
    folder: Path
    manifest: dict[str, Any]

    @property
    def adapter(self) -> Path:
        """The GGUF LoRA adapter."""
        return self.folder / ADAPTER_FILE

    @property
    def base_gguf(self) -> Path:
        """The GGUF file the adapter was trained on."""
        return Path(self.manifest["base"]["gguf"])

    def check_base(self, base: Path) -> None:
        """Raise VersionError unless ``base`` is the file this version was trained on."""
        from rlhf_desktop.tune.base_model import file_sha256

        if not base.is_file():
            raise VersionError(f"the base model file {base} does not exist")
        if file_sha256(base) != self.manifest["base"]["sha256"]:
            raise VersionError(f"chat model v{self.version} was trained on another base file "
                               f"than {base}; choose the base or tune again")


def chat_models_dir() -> Path:
    """``chat_models/`` in the data folder."""
    from rlhf_desktop import config

    path = config.data_dir() / "chat_models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def list_versions() -> list[ChatModelVersion]:
    """Every complete version, oldest first (half-written folders are ignored)."""
    out = []
    for child in chat_models_dir().iterdir():
        match = _NAME.match(child.name)
        complete = (child / MANIFEST_FILE).is_file() and (child / ADAPTER_FILE).is_file()
        if not match or not complete:
            continue
        try:
            manifest = json.loads((child / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        out.append(ChatModelVersion(int(match.group(1)), child, manifest))
    return sorted(out, key=lambda v: v.version)


def get_version(version: int) -> ChatModelVersion:
    """Version ``version`` (VersionError when there is none)."""
    for found in list_versions():
        if found.version == version:
            return found
    raise VersionError(f"there is no chat model v{version} in {chat_models_dir()}")


def register(adapter_gguf: Path, manifest: dict[str, Any]) -> ChatModelVersion:
    """Copy the adapter into the next free ``vNNNN`` folder with its manifest (atomic)."""
    root = chat_models_dir()
    staging = root / f".new-{os.getpid()}-{time.monotonic_ns()}"
    staging.mkdir()
    try:
        shutil.copyfile(adapter_gguf, staging / ADAPTER_FILE)
        record: dict[str, Any] = {}

        def write_manifest(number: int) -> None:
            record.clear()
            record.update({"version": number, "created_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "adapter": ADAPTER_FILE, **manifest})
            (staging / MANIFEST_FILE).write_text(json.dumps(record, indent=1) + "\n",
                                                 encoding="utf-8")

        number, target = publish_numbered(root, staging, "v", write_manifest)
        return ChatModelVersion(number, target, record)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
