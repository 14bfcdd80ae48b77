"""The transformers ranker on the model page: its held-out accuracy beside the tiny model's,
and the choice of which one ranks (``Settings.ranker``; "" = the tiny model).

Qt-free. :meth:`RankerEvalService.compare` is a blocking call for a worker thread (it loads
the ranker and scores pairs); it opens its own database connection. Both models are judged
on the same pairs, which neither was trained on: the user's pairs whose key is in neither
model's training record, or an imported test file.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.config import ConfigError, Settings
from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.reward.hf_ranker import (
    HFRanker,
    RankerLoadError,
    check_folder,
    default_threads,
    pairwise_accuracy,
    read_meta,
    read_train_keys,
)
from rlhf_desktop.reward.model import pair_key
from rlhf_desktop.reward.rankers import list_rankers
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.storage.repo import Repository

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
"""Pairs scored per comparison (a random, seeded sample of the held-out pairs): the
transformers ranker needs about a second per reply on this 2-core machine."""
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class RankerInfo:
    """A transformers ranker the user can choose."""

    folder: str
    name: str
    base: str
    trained_pairs: int | None
    steps: int | None
    held_out_accuracy: float | None
    """Measured by the training run on the pairs it held out of its own data."""
    held_out_pairs: int | None
    in_use: bool


@dataclass(frozen=True)
class Comparison:
    """Both models on the same pairs."""

    folder: str
    source: str
    """Where the pairs came from, in words."""
    pairs: int
    ranker_accuracy: float | None
    tiny_accuracy: float | None
    tiny_version: int | None
    seconds: float
    note: str = ""


class RankerEvalService:
    """Lists rankers, compares one with the tiny model, and chooses the ranker."""

    def __init__(self, rewards: RewardService, settings: Callable[[], Settings],
                 apply_settings: Callable[[Settings], None], db_path: Path | None = None
                 ) -> None:
        self._rewards = rewards
        self._settings = settings
        self._apply = apply_settings
        self._db_path = db_path
        self._lock = threading.Lock()

    @classmethod
    def for_session(cls, session: Any) -> RankerEvalService:
        """The service for an :class:`~rlhf_desktop.services.session.AppSession` (until the
        session builds one itself)."""
        return cls(session._rewards, lambda: session.settings, session.apply_settings)

    # ------------------------------------------------------------------ what there is

    @property
    def in_use(self) -> str:
        """The chosen ranker folder ("" = the tiny model)."""
        return self._settings().ranker

    def status(self) -> str:
        """Which model ranks the chat's replies, in words (with the reason for a fallback)."""
        slot = self._rewards.ranker
        if not slot.wanted:
            return "The tiny model ranks the replies."
        if slot.error:
            return slot.error
        name = Path(slot.wanted).name
        if slot.loaded is None:
            return (f"The transformers ranker {name} ranks the replies (it loads with the "
                    f"next turn).")
        return f"The transformers ranker {name} ranks the replies."

    def rankers(self) -> list[RankerInfo]:
        """The registered rankers (``<data folder>/rankers``) and the chosen one, newest first."""
        chosen = self.in_use
        folders = [str(r.folder) for r in reversed(list_rankers())]
        if chosen and str(Path(chosen).expanduser()) not in folders:
            folders.insert(0, chosen)
        return [self._info(f, chosen) for f in folders]

    @staticmethod
    def _info(folder: str, chosen: str) -> RankerInfo:
        meta = read_meta(Path(folder).expanduser())
        held = meta.get("held_out") or {}
        pairs = meta.get("pairs") or {}
        base = meta.get("base") or {}
        return RankerInfo(
            folder=folder, name=Path(folder).name, base=str(base.get("name") or "unknown"),
            trained_pairs=pairs.get("used"), steps=meta.get("steps"),
            held_out_accuracy=held.get("accuracy"), held_out_pairs=held.get("pairs"),
            in_use=bool(chosen) and Path(chosen).expanduser() == Path(folder).expanduser())

    # ------------------------------------------------------------------ choosing

    def use(self, folder: str) -> Settings:
        """Rank with ``folder`` from the next turn on ("" = the tiny model): saved in the
        settings and applied. Raises ConfigError (nothing changed) for a folder that is not
        a reward model."""
        folder = folder.strip()
        if folder:
            try:
                folder = str(check_folder(folder).resolve())
            except RankerLoadError as exc:
                raise ConfigError(str(exc)) from exc
        settings = replace(self._settings(), ranker=folder)
        config.save_settings(settings)
        self._apply(settings)
        self._rewards.ranker.choose(folder)
        log.info("ranker: %s", folder or "the tiny model")
        return settings

    # ------------------------------------------------------------------ comparing

    def held_out_pairs(self, ranker_folder: str, test_file: str = ""
                       ) -> tuple[list[PreferencePair], str]:
        """The pairs to compare on and where they came from, in words."""
        if test_file:
            return _read_file(test_file), f"the test file {Path(test_file).name}"
        repo = Repository.open(self._db_path)
        try:
            pairs = repo.pairs.list_all()
        finally:
            repo.close()
        seen = set(self._rewards.model.train_keys) | read_train_keys(Path(ranker_folder))
        unseen = [p for p in pairs if pair_key(p.prompt_text, p.chosen, p.rejected) not in seen]
        return unseen, "your pairs that neither model was trained on"

    def compare(self, ranker_folder: str, test_file: str = "", limit: int = DEFAULT_LIMIT,
                progress: ProgressFn | None = None, seed: int = 0) -> Comparison:
        """Held-out accuracy of the ranker and of the tiny model in use, on the same pairs
        (blocking: call from a worker thread). Raises ConfigError for a bad folder or file."""
        started = time.monotonic()
        with self._lock:
            pairs, source = self.held_out_pairs(ranker_folder, test_file)
            note = ""
            if limit and len(pairs) > limit:
                note = f"a random sample of {limit} of the {len(pairs)} pairs"
                pairs = random.Random(seed).sample(pairs, limit)
            tiny = self._rewards.model
            tiny_version = tiny.version if tiny.trained else None
            if not pairs:
                return Comparison(ranker_folder, source, 0, None, None, tiny_version,
                                  time.monotonic() - started,
                                  "no pairs to compare on: label more turns, or choose a "
                                  "test file")
            ranker = self._ranker(ranker_folder)
            margins: list[float] = []
            tiny_margins: list[float] = []
            for done, pair in enumerate(pairs, start=1):
                messages = [m.to_dict() for m in pair.prompt]
                chosen, rejected = ranker.score(messages, [pair.chosen, pair.rejected])
                margins.append(chosen - rejected)
                if tiny.trained:
                    t_chosen, t_rejected = tiny.score(pair.prompt_text,
                                                      [pair.chosen, pair.rejected])
                    tiny_margins.append(t_chosen - t_rejected)
                if progress is not None:
                    progress(done, len(pairs))
            if not tiny.trained:
                note = "; ".join(n for n in (note, "the tiny model is not trained yet") if n)
            return Comparison(ranker_folder, source, len(pairs), pairwise_accuracy(margins),
                              pairwise_accuracy(tiny_margins) if tiny.trained else None,
                              tiny_version, time.monotonic() - started, note)

    def _ranker(self, folder: str) -> HFRanker:
        loaded = self._rewards.ranker.loaded
        if loaded is not None and loaded.folder == Path(folder).expanduser():
            return loaded
        try:
            return HFRanker.load(folder, threads=default_threads())
        except RankerLoadError as exc:
            raise ConfigError(str(exc)) from exc


def _read_file(path: str) -> list[PreferencePair]:
    from rlhf_desktop.core.formats import parse_lines

    file = Path(path).expanduser()
    try:
        with file.open("rb") as fh:
            parsed = parse_lines(list(fh))
    except OSError as exc:
        raise ConfigError(f"The test file {file} could not be read: {exc}") from exc
    if parsed.errors:
        shown = "; ".join(f"line {e.line}: {e.message}" for e in parsed.errors[:3])
        raise ConfigError(f"The test file {file.name} has {len(parsed.errors)} bad line(s): "
                          f"{shown}")
    if not parsed.pairs:
        raise ConfigError(f"The test file {file.name} holds no pairs.")
    return list(parsed.pairs)


def accuracy_text(value: float | None) -> str:
    """``61.4 %`` or ``–``."""
    return "–" if value is None else f"{value * 100:.1f} %"


def describe(comparison: Comparison) -> str:
    """One line: both accuracies, the pairs and where they came from."""
    c = comparison
    if not c.pairs:
        return c.note
    tiny = (f"tiny model v{c.tiny_version} {accuracy_text(c.tiny_accuracy)}"
            if c.tiny_version is not None else "tiny model: not trained yet")
    text = (f"On {c.pairs} pairs ({c.source}): transformers ranker "
            f"{accuracy_text(c.ranker_accuracy)}, {tiny} ({c.seconds:.0f} s)")
    return f"{text}; {c.note}" if c.note else text
