"""The transformers ranker chosen in Settings (``Settings.ranker``, a folder; "" = none).

Qt-free, and torch-free until a folder is actually loaded: loading happens lazily, on the
first turn ranked after the choice, in the rank worker thread. A folder that cannot be loaded
or scored never stops ranking: :class:`RankerSlot` says why (``error``) and the caller falls
back to the tiny model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from rlhf_desktop import config
from rlhf_desktop.reward.hf_ranker import (
    HFRanker,
    RankerLoadError,
    check_folder,
    default_threads,
)

log = logging.getLogger(__name__)

TRANSFORMERS_RANKER_VERSION = 0
"""``candidates.model_version`` of replies scored by the transformers ranker (the tiny
model's versions start at 1)."""


class RankerSlot:
    """Holds the wanted folder, the loaded ranker, and the last failure in words."""

    def __init__(self, folder: str = "") -> None:
        self._lock = threading.Lock()
        self._wanted = ""
        self._ranker: HFRanker | None = None
        self._failed_for: str | None = None
        self._last: tuple[tuple[str, str, tuple[str, ...]], tuple[float, ...]] | None = None
        self.error: str | None = None
        """Why the chosen folder does not rank now (None: it does, or none is chosen)."""
        if folder.strip():
            self.choose(folder)

    @property
    def wanted(self) -> str:
        """The chosen folder ("" = the tiny model)."""
        return self._wanted

    @property
    def loaded(self) -> HFRanker | None:
        """The loaded ranker, if it is loaded and still the chosen one."""
        ranker = self._ranker
        return ranker if ranker is not None and str(ranker.folder) == self._resolved() else None

    def _resolved(self) -> str:
        return str(Path(self._wanted).expanduser()) if self._wanted else ""

    def choose(self, folder: str) -> None:
        """Rank with ``folder`` from the next turn on ("" = the tiny model); a folder that is
        plainly not a reward model is reported now (``error``), without loading torch."""
        with self._lock:
            self._wanted = folder.strip()
            self._failed_for = None
            self.error = None
            if not self._wanted:
                self._ranker = None
                return
            try:
                check_folder(self._wanted)
            except RankerLoadError as exc:
                self._fail(str(exc))

    def _fail(self, message: str) -> None:
        self._failed_for = self._wanted
        self._ranker = None
        self.error = (f"The transformers ranker is not used, the tiny model ranks instead: "
                      f"{message}")
        log.warning(config.redact(self.error))

    def ensure(self) -> HFRanker | None:
        """The chosen ranker, loading it now if needed (seconds; call from a worker
        thread); None when none is chosen or it failed (``error`` says why)."""
        with self._lock:
            if not self._wanted or self._failed_for == self._wanted:
                return None
            ranker = self.loaded
            if ranker is not None:
                return ranker
            try:
                ranker = HFRanker.load(self._wanted, threads=default_threads())
            except RankerLoadError as exc:
                self._fail(str(exc))
                return None
            except Exception as exc:  # a broken install must not stop ranking
                self._fail(f"{type(exc).__name__}: {exc}")
                return None
            self._ranker = ranker
            self.error = None
            log.info("ranking with the transformers ranker %s (loaded in %.1f s)",
                     ranker.folder, ranker.load_seconds)
            return ranker

    def score(self, prompt: str, replies: Sequence[str]) -> list[float] | None:
        """Scores from the chosen ranker, or None (the caller uses the tiny model)."""
        ranker = self.ensure()
        if ranker is None:
            return None
        key = (str(ranker.folder), prompt, tuple(replies))
        last = self._last
        if last is not None and last[0] == key:  # the same turn explained after ranking
            return list(last[1])
        try:
            scores = ranker.score(prompt, list(replies))
        except Exception as exc:  # e.g. out of memory on a long turn
            with self._lock:
                self._fail(f"scoring failed: {type(exc).__name__}: {exc}")
            return None
        self._last = (key, tuple(scores))
        return scores
