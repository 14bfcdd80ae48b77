"""Bradley-Terry strengths on the Elo scale, as Chatbot Arena computes them (FastChat
``elo_analysis.py`` ``compute_mle_elo``), and their bootstrap intervals; the arithmetic of
:mod:`rlhf_desktop.core.leaderboard` (pure: numpy and scikit-learn).

The fit is a logistic regression without intercept or penalty on rows of +ln(BASE) for one
source and −ln(BASE) for the other, a tie counting as half a win each way; strengths are
SCALE × coefficient + INIT_RATING, anchored so that their mean is INIT_RATING.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from threadpoolctl import threadpool_limits

SCALE = 400.0
BASE = 10.0
INIT_RATING = 1000.0
OPEN = 2000.0
"""In a resample without a finite estimate, a strength this far (Elo points) from the full
data's is one that ran off to infinity: it makes that bound of the interval open."""


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Tiny matrices: BLAS threads buy nothing, and an oversubscribed OpenBLAS on a busy
    machine made each fit ~10× slower (measured here, as in reward/training.py)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True)
class Battle:
    """One comparison of two different sources: ``score`` is a's (1 won, 0 lost, ½ tie)."""

    a: str
    b: str
    score: float


def battle_weights(turns: Sequence[Sequence[Battle]], names: Sequence[str]) -> np.ndarray:
    """Per turn, ``w[t, i, j]`` = wins of source i over source j, a tie adding ½ to both
    directions (FastChat's ``ptbl_win`` halved)."""
    index = {name: i for i, name in enumerate(names)}
    w = np.zeros((len(turns), len(names), len(names)))
    for t, battles in enumerate(turns):
        for bt in battles:
            i, j = index[bt.a], index[bt.b]
            w[t, i, j] += bt.score
            w[t, j, i] += 1.0 - bt.score
    return w


def finite_mle(w: np.ndarray) -> np.ndarray:
    """Whether every source's strength has a finite maximum-likelihood estimate, for one
    ``w`` (sources × sources) or a batch of them: the graph "i scored against j" is strongly
    connected (Zermelo's condition), so no group of sources won, or lost, all its battles
    against the rest. A source without battles fails it too."""
    p = w.shape[-1]
    if p < 2:
        return np.zeros(w.shape[:-2], dtype=bool)
    reach = ((w > 0) | np.eye(p, dtype=bool)).astype(np.int64)
    for _ in range(max(1, math.ceil(math.log2(p)))):
        reach = np.minimum(reach @ reach, 1)
    return np.asarray(reach.all(axis=(-2, -1)))


def fit_strengths(w: np.ndarray) -> np.ndarray:
    """Strengths on the Elo scale from ``w`` (sources × sources wins, see
    :func:`battle_weights`), by FastChat's logistic regression; NaN for a source without
    battles. The present sources are anchored to a mean of INIT_RATING."""
    p = w.shape[0]
    present = (w + w.T).sum(axis=1) > 0
    rows, ys, weights = [], [], []
    for i, j in combinations(range(p), 2):
        if w[i, j] + w[j, i] <= 0:
            continue
        x = np.zeros(p)
        x[i], x[j] = math.log(BASE), -math.log(BASE)
        rows += [x, x]
        ys += [1.0, 0.0]
        weights += [w[i, j], w[j, i]]
    out = np.full(p, np.nan)
    if not rows:
        return out
    # scikit-learn (with scipy and pandas, ~200 MiB resident) loads on the first fit, not
    # when storage imports this module at the window's start.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8, max_iter=200)
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr.fit(np.array(rows), np.array(ys), sample_weight=np.array(weights))
    coef = lr.coef_[0]
    coef = coef - coef[present].mean()
    out[present] = SCALE * coef[present] + INIT_RATING
    return out


def newton_strengths(w: np.ndarray, iterations: int = 50) -> np.ndarray:
    """The same maximum-likelihood strengths as :func:`fit_strengths`, for a batch of
    ``w`` (batch × sources × sources) at once by Newton's method (the bootstrap refits
    thousands of times; a test checks both give the same strengths). A source without
    battles is NaN; where no finite estimate exists the steps are capped and the strengths
    drift far out, as the logistic regression's do."""
    batch, p = w.shape[0], w.shape[1]
    alpha = math.log(BASE)
    n = w + np.transpose(w, (0, 2, 1))
    present = n.sum(axis=2) > 0
    coef = np.zeros((batch, p))
    # The likelihood is flat along "all strengths + c"; the rank-one term fixes the mean,
    # which the gradient never moves, and the tiny ridge keeps absent sources solvable.
    fix = np.ones((p, p)) / p + 1e-9 * np.eye(p)
    for _ in range(iterations):
        prob = 1.0 / (1.0 + np.exp(-alpha * (coef[:, :, None] - coef[:, None, :])))
        grad = alpha * (w - n * prob).sum(axis=2)
        curv = alpha ** 2 * n * prob * (1.0 - prob)
        hess = -curv + np.eye(p)[None] * curv.sum(axis=2)[:, :, None]  # −∇² (a Laplacian)
        step = np.linalg.solve(hess + fix, grad[:, :, None])[:, :, 0]
        step = np.clip(step, -2.0, 2.0)
        coef += step
        if np.abs(step).max() < 1e-9:
            break
    coef = np.where(present, coef, np.nan)
    coef -= np.nanmean(coef, axis=1, keepdims=True)
    return SCALE * coef + INIT_RATING


def bootstrap(w_turns: np.ndarray, rounds: int, seed: int,
              point: np.ndarray) -> tuple[np.ndarray, float]:
    """Strengths refitted on ``rounds`` resamples of the turns (rows: rounds), and the share
    of resamples without a finite estimate for every source.

    In such a resample a source (or a group) won, or lost, every battle it had, and its
    strength runs off to ±infinity; with the mean as anchor it would drag the others along.
    There the others are anchored to ``point`` (the full data's strengths) by the median
    of their differences, and the runaway ones become ±inf: the bound it reaches is open."""
    rng = np.random.default_rng(seed)
    n_turns = w_turns.shape[0]
    draws = rng.multinomial(n_turns, np.full(n_turns, 1.0 / n_turns), size=rounds)
    w = np.tensordot(draws.astype(float), w_turns, axes=1)
    with _one_blas_thread():
        strengths = newton_strengths(w)
    bad = ~finite_mle(w)
    if bad.any():
        odd = strengths[bad]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            odd -= np.nanmedian(odd - point, axis=1, keepdims=True)
        far = odd - point
        odd[far > OPEN] = np.inf
        odd[far < -OPEN] = -np.inf
        strengths[bad] = odd
    return strengths, float(bad.mean()) if rounds else 0.0


def intervals(boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2.5 and 97.5 percentiles per source (linear, as pandas' quantile), ±inf where
    the bound is open; NaN (a source absent from a resample) is left out."""
    big = 1e12
    finite = np.clip(np.nan_to_num(boot, nan=np.nan, posinf=big, neginf=-big), -big, big)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a source absent from every resample
        low, high = np.nanpercentile(finite, [2.5, 97.5], axis=0)
    low = np.where(low <= -big / 2, -np.inf, low)
    high = np.where(high >= big / 2, np.inf, high)
    return low, high
