"""The model to tune, as a transformers folder.

The built-in chat model ships as a quantised GGUF file (llama.cpp's format). transformers
reads it with ``GgufConfig(dequantize=True)`` (40-60 s on two cores), so the fp32 result is
saved once in the cache folder, keyed by the GGUF file's SHA-256, and reloads in under a
second afterwards. The adapter trained on it is later applied by llama.cpp to the same
GGUF file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rlhf_desktop.tune.options import TuneConfigError

log = logging.getLogger(__name__)

CACHE_ENV = "RLHF_DESKTOP_CACHE"


def cache_dir(configured: str = "") -> Path:
    """The cache folder: the config's ``cache_dir``, ``$RLHF_DESKTOP_CACHE``, else the user's."""
    if configured:
        path = Path(configured).expanduser()
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("rlhf-desktop", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class BaseModel:
    """Where the weights to tune come from."""

    load_from: str
    """A transformers folder, or a model name on the hub."""
    gguf: Path | None
    """The GGUF file the folder was made from (llama.cpp applies the adapter onto it)."""
    gguf_sha256: str | None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(model: str, cache: Path) -> BaseModel:
    """``model`` from the config (empty: the built-in GGUF) as something transformers loads."""
    if not model:
        from rlhf_desktop import config

        try:
            gguf = config.default_gguf_path()
        except config.ConfigError as exc:
            raise TuneConfigError(str(exc)) from exc
        return _from_gguf(gguf, cache)
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise TuneConfigError(f"model file {path} does not exist")
        return _from_gguf(path.resolve(), cache)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TuneConfigError(f"{path} is not a transformers model folder (no config.json)")
        return BaseModel(str(path.resolve()), None, None)
    if path.is_absolute() or model.startswith((".", "~")):
        raise TuneConfigError(f"model {model!r} does not exist")
    return BaseModel(model, None, None)  # a hub name: transformers fetches or finds it


def _from_gguf(gguf: Path, cache: Path) -> BaseModel:
    sha = file_sha256(gguf)
    folder = cache / "base-models" / f"{gguf.stem}-{sha[:16]}"
    if not (folder / "config.json").is_file():
        dequantise(gguf, folder)
    return BaseModel(str(folder), gguf, sha)


def dequantise(gguf: Path, folder: Path) -> None:
    """Load ``gguf`` into transformers (dequantised to fp32) and save it as ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("dequantising %s into %s (once; about a minute)", gguf, folder)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
        )
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "rlhf-desktop-source.json").write_text(json.dumps(
            {"gguf": str(gguf), "sha256": file_sha256(gguf)}, indent=2), encoding="utf-8")
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():  # not another run that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
