"""Training as a plain function: ``train(pairs, config, embedder, progress, cancel)``.

Bradley-Terry: P(chosen ≻ rejected) = sigmoid(w · (f(chosen) − f(rejected))), fitted as an
L2-regularised logistic regression without intercept on feature differences. Each feature
block (reply embedding, prompt × reply, length, words) is scaled as a whole so that its mean
squared difference norm is 1 (no centring, which would break the antisymmetry of a
difference): every block gets the same share of the penalty whatever its width, so the single
length column is not drowned by 384 embedding columns. Regularisation is picked by
cross-validation once there are enough pairs,
and the reported accuracy is the cross-validated pairwise accuracy: folds never split pairs
that share a prompt, so one pick's N−1 pairs are held out together.

Each pair counts by its :attr:`~rlhf_desktop.domain.PreferencePair.weight` (a ranking's
N(N−1)/2 pairs weigh 2/N each; every other pair 1) in the loss and its gradient, in every
cross-validation fit, in the temperature, and in the accuracies (``cv_accuracy``,
``train_accuracy``): a ranked turn counts as much as a picked one in the figure, as it does
in the fit, so six pairs of one ranking do not pass for six independent picks. The
unweighted share of pairs ranked right is kept beside it (``cv_pair_accuracy``). The block
scaling stays unweighted (it holds no label and only sets each block's share of the
penalty). See :mod:`rlhf_desktop.reward.bt_fit`.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.reward.bt_fit import (
    STYLE_BLOCKS,
    STYLE_C,
    fit_bt,
    fit_joint_or_staged,
    fit_temperature,
    pairwise_accuracy,
    style_columns,
)
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.explain import style_summary
from rlhf_desktop.reward.model import (
    DEFAULT_FEATURES,
    TinyRewardModel,
    feature_layout,
    featurize,
    pair_key,
)

__all__ = [
    "STYLE_BLOCKS", "STYLE_C", "CancelFlag", "PairMatrix", "ProgressFn", "TrainConfig",
    "TrainResult", "TrainingCancelled", "TrainingError", "fit_bt", "fit_temperature",
    "pair_matrix", "pair_weights", "pairwise_accuracy", "train",
]

ProgressFn = Callable[[float, str], None]


class CancelFlag(Protocol):
    """Anything with ``is_set()`` (``threading.Event`` for instance)."""

    def is_set(self) -> bool:
        """Whether cancellation was requested."""
        ...


class TrainingCancelled(Exception):
    """Training stopped because its cancel flag was set."""


class TrainingError(Exception):
    """Training cannot run on these pairs; the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    """What to fit and how to validate it.

    Defaults measured on 1,149 real HH-RLHF harmless pairs (benchmarks/reward_quality.py, mean
    over random train/test splits): with block scaling the cross-validated C lands between
    0.03 and 1, and the held-out accuracy is flat within a point across 0.1–0.3, so a short
    grid around it keeps CV fast. ``scaling="dim"`` (each column by its own RMS) is the older
    scheme, kept for comparison; it needs C about 1000× smaller.
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    folds: int = 5
    # C ≤ 0.3: C = 1 won the CV by noise and lost 2.7 points on held-out HH rows
    # (docs/benchmarks.md); on prompts never trained on it gains nothing.
    c_grid: tuple[float, ...] = (0.03, 0.1, 0.3)
    default_c: float = 0.3
    min_pairs_for_c_search: int = 40
    seed: int = 0
    max_iter: int = 300
    tol: float = 1e-7
    scaling: str = "block"
    # The style block: every column scaled to unit RMS difference on its own, then the block
    # to RMS norm ``style_scale`` (larger: less penalty on style than on the other blocks).
    style_scale: float = 1.0
    # "joint": every block fitted together. "staged" (style control): style alone first,
    # then the other blocks with the style margin held fixed (content judged beyond style).
    fit: str = "joint"
    # "best": the C with the best CV accuracy; "one_se": the smallest C (strongest penalty)
    # whose CV accuracy is within one standard error of the best (less noise-chasing).
    c_rule: str = "best"
    # Pairs whose rejected reply was cut at max tokens (metadata ``rejected_cut``): left out
    # by default. With a low max-token limit the cut replies are the longest ones, so those
    # pairs teach "shorter wins" rather than "better wins" (:func:`training_pairs`).
    use_cut_pairs: bool = False


def training_pairs(pairs: Sequence[PreferencePair], cut_ids: set[int],
                   cfg: TrainConfig | None = None) -> tuple[list[PreferencePair], int]:
    """The pairs a training run uses, and how many it left out: every pair, except those
    whose rejected reply was cut at max tokens (``cut_ids``, from
    ``Repository.pairs.cut_ids``) unless ``cfg.use_cut_pairs``. Raises TrainingError when
    only such pairs are stored."""
    cfg = cfg or TrainConfig()
    if cfg.use_cut_pairs or not cut_ids:
        return list(pairs), 0
    kept = [p for p in pairs if p.id is None or p.id not in cut_ids]
    if pairs and not kept:
        raise TrainingError(f"all {len(pairs)} pairs have a rejected reply cut at max tokens, "
                            "which training leaves out by default (they teach 'shorter "
                            "wins'): raise Max tokens in Settings and pick again, or turn "
                            "on Settings → \"Also train on pairs against replies cut at max "
                            "tokens\"")
    return kept, len(pairs) - len(kept)


@dataclass
class TrainResult:
    """A fitted model and how well it generalised."""

    model: TinyRewardModel
    metrics: dict[str, Any] = field(default_factory=dict)
    # cross-validated margin of each training pair (pair order); None without CV
    oof_margins: np.ndarray | None = None


@dataclass
class PairMatrix:
    """Feature differences D (chosen − rejected), one row per pair, and CV groups."""

    diffs: np.ndarray
    groups: np.ndarray
    layout: list[tuple[str, slice]] = field(default_factory=list)


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run NumPy's BLAS on one thread while fitting.

    The matrices are small (pairs × ~1.3k columns), so threads buy nothing, and on a busy
    machine an oversubscribed OpenBLAS made the fits 30× slower (measured on 2 cores).
    threadpoolctl ships with scikit-learn; without it this does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _prompt_group(pair: PreferencePair) -> str:
    key = "\x00".join(f"{m.role}:{m.content}" for m in pair.prompt)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def pair_matrix(
    pairs: Sequence[PreferencePair],
    features: Sequence[str],
    embedder: Embedder,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
    chunk: int = 256,
) -> PairMatrix:
    """Embed (cache first) and build the difference matrix, in chunks so cancel is prompt."""
    rows: list[np.ndarray] = []
    dim = 0
    for start in range(0, len(pairs), chunk):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled()
        part = pairs[start : start + chunk]
        prompts = [p.prompt_text for p in part]
        chosen = [p.chosen for p in part]
        rejected = [p.rejected for p in part]
        vecs = embedder.embed([*prompts, *chosen, *rejected])
        n = len(part)
        pv, cv, rv = vecs[:n], vecs[n : 2 * n], vecs[2 * n :]
        dim = vecs.shape[1]
        rows.append(featurize(features, pv, cv, chosen, prompts)
                    - featurize(features, pv, rv, rejected, prompts))
        if progress is not None:
            progress(0.6 * min(1.0, (start + n) / len(pairs)), "embedding")
    groups = np.array([_prompt_group(p) for p in pairs])
    layout = feature_layout(features, dim) if rows else []
    return PairMatrix(diffs=np.vstack(rows), groups=groups, layout=layout)


def _folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    fold_of_group = {unique[g]: i % k for i, g in enumerate(order)}
    assignment = np.array([fold_of_group[g] for g in groups])
    return [np.flatnonzero(assignment == i) for i in range(k)]


def pair_weights(pairs: Sequence[PreferencePair]) -> np.ndarray:
    """Each pair's training weight (:attr:`PreferencePair.weight`); refuses a negative or
    non-finite one."""
    weights = np.array([p.weight for p in pairs], dtype=np.float64)
    if weights.size and (not np.all(np.isfinite(weights)) or np.any(weights < 0)):
        raise TrainingError("a preference pair has a negative or non-finite weight; fix or "
                            "remove it (weights are ≥ 0, 1 for an ordinary pair)")
    return weights


def _cross_validate(
    x: np.ndarray,
    weights: np.ndarray,
    groups: np.ndarray,
    layout: Sequence[tuple[str, slice]],
    cfg: TrainConfig,
    c_values: Sequence[float],
    progress: ProgressFn | None,
    cancel: CancelFlag | None,
) -> dict[float, tuple[list[float], np.ndarray]]:
    """Per C: fold accuracies (weighted by ``weights``) and the held-out margins (in pair
    order), on scaled ``x``; each fit weights its training pairs.

    ``x`` is scaled once on all pairs: a block's RMS norm does not change when a pair's
    sign flips, so it carries no label and the held-out folds stay honest.
    """
    k = min(cfg.folds, len(np.unique(groups)))
    folds = _folds(groups, k, cfg.seed)
    style_cols = style_columns(layout, x.shape[1])
    out: dict[float, tuple[list[float], np.ndarray]] = {
        c: ([], np.zeros(len(x))) for c in c_values
    }
    total = k * len(c_values)
    done = 0
    for test_idx in folds:
        train_mask = np.ones(len(x), dtype=bool)
        train_mask[test_idx] = False
        train, test = x[train_mask], x[test_idx]
        train_w, test_w = _or_none(weights[train_mask]), _or_none(weights[test_idx])
        w: np.ndarray | None = None
        for c in sorted(c_values):  # warm start along the regularisation path
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled()
            w = _fit(train, c, w, cfg, style_cols, train_w)
            margins = test @ w
            out[c][0].append(pairwise_accuracy(margins, test_w))
            out[c][1][test_idx] = margins
            done += 1
            if progress is not None:
                progress(0.6 + 0.35 * done / total, "cross-validating")
    return out


def _or_none(weights: np.ndarray) -> np.ndarray | None:
    """None when every weight is 1 (the unweighted fit, bit for bit), else the weights."""
    return None if np.all(weights == 1.0) else weights


def _fit(x: np.ndarray, c: float, w0: np.ndarray | None, cfg: TrainConfig,
         style_cols: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """One fit, joint or staged (style first, then the rest with the style margin fixed)."""
    return fit_joint_or_staged(x, c, w0, cfg.fit, style_cols, cfg.max_iter, cfg.tol, weights)


def _scale(
    diffs: np.ndarray, layout: Sequence[tuple[str, slice]] = (), scaling: str = "block",
    style_scale: float = 1.0,
) -> np.ndarray:
    """Per-column divisors: a block's RMS difference norm ("block") or each column's RMS."""
    if scaling not in ("block", "dim"):
        raise ValueError(f"unknown scaling {scaling!r}; known: block, dim")
    if not len(diffs):
        return np.ones(diffs.shape[1])
    if scaling == "dim" or not layout:
        rms = np.sqrt(np.mean(diffs**2, axis=0))
        return np.where(rms > 1e-12, rms, 1.0)
    scale = np.ones(diffs.shape[1])
    for name, cols in layout:
        if name == "style":  # per column, then the block to RMS norm style_scale
            rms = np.sqrt(np.mean(diffs[:, cols] ** 2, axis=0))
            width = cols.stop - cols.start
            scale[cols] = np.where(rms > 1e-12, rms, 1.0) * np.sqrt(width) / style_scale
            continue
        norm = float(np.sqrt(np.mean(np.sum(diffs[:, cols] ** 2, axis=1))))
        scale[cols] = norm if norm > 1e-12 else 1.0
    return scale


def train(
    pairs: Sequence[PreferencePair],
    cfg: TrainConfig | None = None,
    embedder: Embedder | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
) -> TrainResult:
    """Fit a :class:`TinyRewardModel` on preference pairs and measure it by k-fold CV.

    Never crashes on one pair, one kind of outcome, duplicates or identical replies: those
    give a model (possibly all-zero weights) and metrics that say how little was learned.
    """
    cfg = cfg or TrainConfig()
    if not pairs:
        raise TrainingError("no preference pairs yet: pick a reply in a chat, or import a file")
    started = time.perf_counter()
    embedder = embedder or Embedder()
    weights = pair_weights(pairs)
    matrix = pair_matrix(pairs, cfg.features, embedder, progress, cancel)
    diffs, groups, layout = matrix.diffs, matrix.groups, matrix.layout
    n_groups = len(np.unique(groups))
    metrics: dict[str, Any] = {
        "pairs": len(pairs),
        "labels": len({p.label_id if p.label_id is not None else i for i, p in enumerate(pairs)}),
        "features": list(cfg.features),
        "folds": 0,
        "cv_accuracy": None,
        "cv_accuracy_std": None,
        "cv_mean_margin": None,
        "weighted": bool(_or_none(weights) is not None),
        "pair_weight_total": float(weights.sum()),
    }
    c_best = cfg.default_c
    oof: np.ndarray | None = None
    scale = _scale(diffs, layout, cfg.scaling, cfg.style_scale)
    x = (diffs / scale).astype(np.float32)
    if n_groups >= 2:
        search = len(pairs) >= cfg.min_pairs_for_c_search
        c_values = cfg.c_grid if search else (cfg.default_c,)
        with _single_threaded_blas():
            results = _cross_validate(x, weights, groups, layout, cfg, c_values, progress,
                                      cancel)
        # Ties go to the C nearest the measured default.
        c_best = max(
            c_values,
            key=lambda c: (np.mean(results[c][0]), -abs(np.log(c / cfg.default_c))),
        )
        if cfg.c_rule == "one_se":  # the strongest penalty within one standard error
            best = results[c_best][0]
            floor = np.mean(best) - np.std(best) / np.sqrt(len(best))
            c_best = min(c for c in c_values if np.mean(results[c][0]) >= floor)
        accs, margins = results[c_best]
        oof = margins
        metrics.update(
            folds=len(accs),
            cv_accuracy=float(np.mean(accs)),
            cv_accuracy_std=float(np.std(accs)),
            cv_mean_margin=float(np.mean(margins)),
            cv_pair_accuracy=pairwise_accuracy(margins),
            c_searched=search,
        )
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled()
    if progress is not None:
        progress(0.95, "fitting the final model")
    with _single_threaded_blas():
        w_scaled = _fit(x, c_best, None, cfg, style_columns(layout, x.shape[1]),
                        _or_none(weights))
        metrics["style"] = style_summary(x, w_scaled, scale, layout, c_best)
    w = w_scaled / scale
    train_margins = diffs @ w
    metrics.update(
        c=c_best,
        train_accuracy=pairwise_accuracy(train_margins, _or_none(weights)),
        mean_margin=float(np.mean(train_margins)),
        seconds=round(time.perf_counter() - started, 3),
    )
    temperature = fit_temperature(oof, _or_none(weights)) if oof is not None else 1.0
    metrics["temperature"] = temperature
    model = TinyRewardModel(
        temperature=temperature,
        weights=w,
        features=tuple(cfg.features),
        embedder_id=embedder.embedder_id,
        metrics=metrics,
        embedder=embedder,
        train_keys=frozenset(pair_key(p.prompt_text, p.chosen, p.rejected) for p in pairs),
    )
    if progress is not None:
        progress(1.0, "done")
    return TrainResult(model=model, metrics=metrics, oof_margins=oof)
