"""The current reward model: versions on disk, loading with fallback, training runs; and the
transformers ranker chosen in Settings, which ranks turns instead of the tiny model while it
loads and scores (``ranker_slot.py``; the tiny model takes over, with a message, when not).

Qt-free. ``train_now`` is a plain blocking call meant for a worker thread; it opens its own
database connection, so it never shares one with the caller's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_desktop import config
from rlhf_desktop.core.pick_rules import is_whole_reply, reply_key
from rlhf_desktop.domain import Candidate, ModelVersion, PreferencePair
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.hf_ranker import p_better
from rlhf_desktop.reward.model import (
    UNSURE_BELOW,
    ModelFileError,
    TinyRewardModel,
    block_width,
    feature_layout,
    length_feature,
    pair_key,
)
from rlhf_desktop.reward.style import STYLE_NAMES, style_features
from rlhf_desktop.reward.training import (
    CancelFlag,
    ProgressFn,
    TrainConfig,
    TrainResult,
    pair_matrix,
    pairwise_accuracy,
    train,
    training_pairs,
)
from rlhf_desktop.services.ranking.slot import TRANSFORMERS_RANKER_VERSION, RankerSlot
from rlhf_desktop.services.ranking.versions import (
    candidate_order,
    clean_pending,
    pin_version,
    pinned_version,
    store_version,
)
from rlhf_desktop.storage.embcache import SqliteEmbeddingCache
from rlhf_desktop.storage.repo import Repository

LABELS_RECORDED = "labels_recorded"
"""A version's metrics key: the labels stored when it read its pairs (the retrainer counts
the labels to the next run from it)."""

log = logging.getLogger(__name__)


@dataclass
class Ranked:
    """Scores of a turn's replies and the model version that gave them (None: untrained)."""

    scores: list[float]
    version: int | None


@dataclass(frozen=True)
class ScoreParts:
    """One reply's score split: ``style + content == score``.

    ``style``: the style and length blocks (form); ``content``: the embeddings and the words
    (substance). ``*_vs_mean``: the same parts minus the turn's mean, which is what orders
    the replies. ``drivers``: the style features that moved this reply most against the
    turn's mean, as (feature name, logit), largest first.
    """

    score: float
    style: float
    content: float
    style_vs_mean: float
    content_vs_mean: float
    drivers: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class TurnExplanation:
    """Why a turn's replies ranked as they did, with the model version that says so."""

    version: int | None
    parts: list[ScoreParts]
    """One per reply, in the order given."""
    p_top: float | None
    """P(top reply ≻ runner-up), calibrated; None when untrained or under two replies."""
    unsure: bool
    """``p_top`` under :data:`UNSURE_BELOW` (or no trained model)."""
    metric: str
    """Names the confidence definition (so stored figures can be told apart later)."""
    unsure_below: float = UNSURE_BELOW


class RewardService:
    """Owns the embedder and the current :class:`TinyRewardModel`."""

    def __init__(self, db_path: Path | None = None, embedder: Embedder | None = None) -> None:
        self.db_path = db_path
        settings = config.load_settings()
        self.embedder = embedder or Embedder(
            settings.embedder_path or None, cache=SqliteEmbeddingCache(db_path)
        )
        self.model = TinyRewardModel(embedder=self.embedder)
        self.load_warnings: list[str] = []
        self._train_lock = threading.Lock()
        self.ranker = RankerSlot(settings.ranker)
        """The transformers ranker of ``Settings.ranker`` (loaded on the first turn)."""

    # ------------------------------------------------------------------ loading

    def load_current(self, repo: Repository) -> TinyRewardModel:
        """The version in use: the pinned one (``use``), else the newest adopted one.

        A refused file falls back to the one before it; versions that were not adopted are
        tried last.
        """
        self.load_warnings = []
        clean_pending()
        for version in candidate_order(repo.versions.list_all(), pinned_version()):
            try:
                model = TinyRewardModel.load(version.path, embedder=self.embedder)
            except (ModelFileError, OSError, ValueError, EOFError) as exc:
                message = f"model v{version.version} was not loaded: {exc}"
                log.warning(message)
                self.load_warnings.append(message)
                continue
            model.version = version.version
            self.model = model
            return model
        self.model = TinyRewardModel(embedder=self.embedder)
        return self.model

    @property
    def version(self) -> int | None:
        """The version of the model in use (None while untrained)."""
        return self.model.version if self.model.trained else None

    # ------------------------------------------------------------------ scoring

    @property
    def scoring_version(self) -> int | None:
        """What ranks now: :data:`TRANSFORMERS_RANKER_VERSION` while the transformers ranker
        does, else :attr:`version`."""
        if self.ranker.loaded is not None:
            return TRANSFORMERS_RANKER_VERSION
        return self.version

    def rank(self, prompt: str, replies: Sequence[str]) -> Ranked:
        """Score replies with the transformers ranker when one is chosen and works, else the
        current tiny model (embeds them; call from a worker thread)."""
        if self.ranker.wanted:
            scores = self.ranker.score(prompt, replies)
            if scores is not None:
                return Ranked(scores=scores, version=TRANSFORMERS_RANKER_VERSION)
        model = self.model
        scores = model.score(prompt, list(replies))
        return Ranked(scores=scores, version=model.version if model.trained else None)

    def rank_replies(self, prompt: str, candidates: Sequence[Candidate]
                     ) -> tuple[list[float | None], int | None]:
        """Scores of a turn's replies, one per candidate, and the version that gave them.

        Only whole replies are scored and ranked (:func:`~rlhf_desktop.core.pick_rules.
        is_whole_reply`): a failed, stopped or empty reply gets None, so an empty "Failed"
        card never outranks a whole reply (an empty text scores near zero, above many whole
        replies). Call from a worker thread."""
        whole = [i for i, c in enumerate(candidates) if is_whole_reply(c)]
        scores: list[float | None] = [None] * len(candidates)
        if not whole:
            return scores, self.scoring_version
        result = self.rank(prompt, [candidates[i].text for i in whole])
        if result.version is not None:
            for i, score in zip(whole, result.scores, strict=True):
                scores[i] = score
        return scores, result.version

    def explain_replies(self, prompt: str, candidates: Sequence[Candidate]) -> TurnExplanation:
        """:meth:`explain` of a turn's whole replies only (the confidence compares the top
        two different whole replies, never two failures nor two copies); a failed, stopped
        or empty reply gets an all-zero :class:`ScoreParts` in its place, so ``parts`` stays
        one per candidate."""
        whole = [i for i, c in enumerate(candidates) if is_whole_reply(c)]
        blank = ScoreParts(score=0.0, style=0.0, content=0.0, style_vs_mean=0.0,
                           content_vs_mean=0.0, drivers=())
        parts = [blank] * len(candidates)
        if not whole:
            return TurnExplanation(version=self.scoring_version, parts=parts, p_top=None,
                                   unsure=True, metric="no whole reply to rank")
        # Identical replies (pick_rules.same_reply) are one reply, a tie by design: each is
        # explained once, so the confidence compares the top two *different* replies.
        first: dict[str, int] = {}
        for i in whole:
            first.setdefault(reply_key(candidates[i].text), i)
        why = self.explain(prompt, [candidates[i].text for i in first.values()])
        if len(why.parts) != len(first):
            return replace(why, parts=[])
        by_key = dict(zip(first, why.parts, strict=True))
        for i in whole:
            parts[i] = by_key[reply_key(candidates[i].text)]
        return replace(why, parts=parts)

    def explain(self, prompt: str, replies: Sequence[str]) -> TurnExplanation:
        """Scores split into style and content, the style drivers and the turn's confidence
        (embeds the replies; call from a worker thread). With the transformers ranker, its
        scores are all content and the confidence is its Bradley-Terry P(top ≻ runner-up)."""
        if self.ranker.wanted:
            scores = self.ranker.score(prompt, replies)
            if scores is not None:
                return ranker_explanation(scores)
        model = self.model
        version = model.version if model.trained else None
        raw = model.explain(prompt, list(replies))
        confidence = model.turn_confidence([r["score"] for r in raw])
        parts: list[ScoreParts] = []
        if raw:
            style = np.array([r["style"] for r in raw])
            content = np.array([r["content"] for r in raw])
            drivers = style_contributions(model, prompt, replies)
            drivers = drivers - drivers.mean(axis=0, keepdims=True)
            for i, r in enumerate(raw):
                order = np.argsort(-np.abs(drivers[i]))
                top = tuple((STYLE_NAMES[k], float(drivers[i, k])) for k in order[:3]
                            if abs(drivers[i, k]) >= DRIVER_MIN)
                parts.append(ScoreParts(
                    score=r["score"], style=r["style"], content=r["content"],
                    style_vs_mean=float(style[i] - style.mean()),
                    content_vs_mean=float(content[i] - content.mean()), drivers=top))
        return TurnExplanation(version=version, parts=parts, p_top=confidence["p_top"],
                               unsure=bool(confidence["unsure"]),
                               metric=str(confidence["metric"]))

    # ------------------------------------------------------------------ training

    def train_now(
        self,
        cfg: TrainConfig | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFlag | None = None,
    ) -> ModelVersion:
        """Train on the stored pairs (:func:`training_pairs`: without the cut-rejected ones by
        default), save a new version atomically, record it, use it.

        Blocking; one at a time (a second call waits for the first).
        """
        with self._train_lock:
            repo = Repository.open(self.db_path)
            try:
                recorded = repo.labels.count()
                pairs, cut = training_pairs(repo.pairs.list_all(), repo.pairs.cut_ids(), cfg)
                result = train(pairs, cfg, self.embedder, progress, cancel)
                result.metrics["cut_pairs_left_out"] = cut
                # the labels stored when the pairs were read: the next run counts from here
                # ("labels" counts only those with a pair trained on)
                result.metrics[LABELS_RECORDED] = recorded
                adoption = decide_adoption(self.model, result, pairs, self.embedder)
                result.metrics["adoption"] = adoption
                record = store_version(repo, result.model, result.metrics)
            finally:
                repo.close()
            result.model.version = record.version
            if adoption["adopted"]:
                self.model = result.model
                pin_version(None)  # the newest adopted version is in use again
            log.info("trained model v%d: %s; %s", record.version, _summary(result.metrics),
                     adoption["reason"])
            return record


def ranker_explanation(scores: Sequence[float]) -> TurnExplanation:
    """A turn scored by the transformers ranker: no style split, BT confidence."""
    mean = float(np.mean(scores)) if len(scores) else 0.0
    parts = [ScoreParts(score=s, style=0.0, content=s, style_vs_mean=0.0,
                        content_vs_mean=s - mean, drivers=()) for s in scores]
    top = sorted(scores, reverse=True)
    p_top = p_better(top[0] - top[1]) if len(top) >= 2 else None
    return TurnExplanation(version=TRANSFORMERS_RANKER_VERSION, parts=parts, p_top=p_top,
                           unsure=p_top is None or p_top < UNSURE_BELOW,
                           metric="transformers ranker: sigmoid(top - runner-up)")


DRIVER_MIN = 0.02  # logit: smaller style contributions are not named on a card


def style_contributions(model: TinyRewardModel, prompt: str, replies: Sequence[str]
                        ) -> np.ndarray:
    """Per reply and :data:`STYLE_NAMES` feature: its part of the score (logit); the length
    block counts as ``words``. Zeros for an untrained model or one without style columns."""
    out = np.zeros((len(replies), len(STYLE_NAMES)), dtype=np.float64)
    w = model.weights
    if w is None or not replies:
        return out
    embedded = sum(1 for n in model.features if n in ("reply", "prompt_x_reply"))
    dim = (len(w) - sum(block_width(n, 0) for n in model.features)) // max(1, embedded)
    for name, cols in feature_layout(model.features, dim):
        if name == "style":
            out += style_features(list(replies), [prompt] * len(replies)) * w[cols]
        elif name == "length":
            out[:, 0] += length_feature(list(replies))[:, 0] * float(w[cols][0])
    return out


MIN_UNSEEN_FOR_GATE = 10


def decide_adoption(current: TinyRewardModel, result: TrainResult,
                    pairs: Sequence[PreferencePair], embedder: Embedder) -> dict[str, Any]:
    """Adopt a new version only if it is not worse than the one in use on the labels that
    the one in use never saw.

    Both are judged on the same pairs without having trained on them: the current model
    never saw them, and the new model's figure is its cross-validated (out-of-fold) margin.
    """
    out: dict[str, Any] = {"adopted": True, "compared_pairs": 0, "current_version":
                           current.version if current.trained else None,
                           "current_accuracy": None, "new_accuracy": None}
    if not current.trained:
        return {**out, "reason": "first model"}
    if not current.train_keys:
        return {**out, "reason": "the model in use has no record of its training pairs"}
    unseen = np.array([pair_key(p.prompt_text, p.chosen, p.rejected) not in current.train_keys
                       for p in pairs], dtype=bool)
    out["compared_pairs"] = int(unseen.sum())
    if unseen.sum() < MIN_UNSEEN_FOR_GATE or result.oof_margins is None:
        return {**out, "reason": f"too few new pairs to compare ({int(unseen.sum())} < "
                                 f"{MIN_UNSEEN_FOR_GATE})"}
    new_pairs = [p for p, u in zip(pairs, unseen, strict=True) if u]
    assert current.weights is not None
    cur = pairwise_accuracy(pair_matrix(new_pairs, current.features, embedder).diffs
                            @ current.weights)
    new = pairwise_accuracy(result.oof_margins[unseen])
    out.update(current_accuracy=cur, new_accuracy=new, adopted=bool(new >= cur))
    verdict = "adopted" if new >= cur else f"kept v{current.version} in use"
    out["reason"] = (f"on the {int(unseen.sum())} pairs v{current.version} never saw: new "
                     f"{new * 100:.1f} % (cross-validated) vs v{current.version} "
                     f"{cur * 100:.1f} %; {verdict}")
    return out


def _summary(metrics: dict[str, object]) -> str:
    acc = metrics.get("cv_accuracy")
    acc_text = "n/a" if acc is None else f"{float(str(acc)) * 100:.1f} %"
    return f"CV accuracy {acc_text} on {metrics.get('pairs')} pairs"
