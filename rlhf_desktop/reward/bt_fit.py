"""The Bradley-Terry fit itself, with a weight per pair: the weighted logistic loss, the
staged (style first) variant, the temperature, and the (weighted) pairwise accuracy.

A pair's weight (:attr:`~rlhf_desktop.domain.PreferencePair.weight`) multiplies its term
of the loss and of the gradient: a full ranking's N(N−1)/2 pairs weigh 2/N each, so a
ranked turn pulls the fit as hard as a pick of the same N replies (N−1 pairs of weight 1).
Weights are not normalised: their sum is the effective number of pairs against which the
L2 penalty is set. With every weight 1 (or ``weights=None``) everything here is exactly the
unweighted fit.

scipy loads on the first fit, not when the window imports the reward package: at start-up it
cost ~30 MiB of resident memory and most of the window's import time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STYLE_BLOCKS = ("style", "length")
STYLE_C = 1.0  # style-only stage of the staged fit: few columns, light penalty


def fit_bt(
    diffs: np.ndarray,
    c: float,
    w0: np.ndarray | None = None,
    max_iter: int = 300,
    tol: float = 1e-7,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Minimise Σ sᵢ log(1 + exp(−Dᵢ w)) + ‖w‖² / (2C) (logistic loss, no intercept), with
    ``weights`` sᵢ per pair (None: all 1).

    L-BFGS with the products in float32 (the fit is memory-bound; the loss and the weights
    stay float64). ``tol`` is the relative loss decrease at which it stops: on real pairs
    1e-7 gives the same held-out accuracy as full convergence with a quarter fewer steps.
    """
    dim = diffs.shape[1]
    if diffs.shape[0] == 0 or not np.any(diffs):
        return np.zeros(dim)
    from scipy.optimize import minimize
    from scipy.special import expit

    x = np.asarray(diffs, dtype=np.float32)
    fixed = np.zeros(len(x), dtype=np.float32) if offset is None else offset.astype(np.float32)
    s = None if weights is None else np.asarray(weights, dtype=np.float64)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        margin = x @ w.astype(np.float32) + fixed
        terms = np.logaddexp(0.0, -margin, dtype=np.float64)
        pull = expit(-margin)
        if s is not None:
            terms = terms * s
            pull = (pull * s).astype(np.float32)
        loss = float(terms.sum() + 0.5 * (w @ w) / c)
        grad = -(x.T @ pull).astype(np.float64) + w / c
        return loss, grad

    start = np.zeros(dim) if w0 is None else w0
    result = minimize(objective, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "ftol": tol})
    return np.asarray(result.x, dtype=np.float64)


def fit_temperature(margins: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The T that makes sigmoid(margin / T) best calibrated on held-out margins (max
    likelihood, each margin weighted by its pair's weight, T in [0.25, 20]); 1.0 with fewer
    than 20 margins."""
    if len(margins) < 20 or not np.any(margins):
        return 1.0
    from scipy.optimize import minimize_scalar

    s = np.ones(len(margins)) if weights is None else np.asarray(weights, dtype=np.float64)

    def nll(log_t: float) -> float:
        return float((s * np.logaddexp(0.0, -margins / np.exp(log_t))).sum())

    result = minimize_scalar(nll, bounds=(np.log(0.25), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def pairwise_accuracy(margins: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Share of pairs ranked right; a tie counts as half. With ``weights``, each pair counts
    by its weight (a ranking's pairs share what one pick's pairs weigh)."""
    if margins.size == 0:
        return float("nan")
    right = (margins > 0) + 0.5 * (margins == 0)
    if weights is None:
        return float(right.sum() / margins.size)
    s = np.asarray(weights, dtype=np.float64)
    total = float(s.sum())
    return float((right * s).sum() / total) if total > 0 else float("nan")


def style_columns(layout: Sequence[tuple[str, slice]], width: int) -> np.ndarray:
    """Boolean mask of the style columns (the style block and the length block)."""
    mask = np.zeros(width, dtype=bool)
    for name, cols in layout:
        if name in STYLE_BLOCKS:
            mask[cols] = True
    return mask


def fit_joint_or_staged(x: np.ndarray, c: float, w0: np.ndarray | None, fit: str,
                        style_cols: np.ndarray, max_iter: int, tol: float,
                        weights: np.ndarray | None = None) -> np.ndarray:
    """One fit, ``joint`` or ``staged`` (style first, then the rest with the style margin
    fixed), each pair weighted by ``weights``."""
    if fit == "joint" or not style_cols.any() or style_cols.all():
        return fit_bt(x, c, w0, max_iter, tol, weights=weights)
    if fit != "staged":
        raise ValueError(f"unknown fit {fit!r}; known: joint, staged")
    w = np.zeros(x.shape[1])
    w[style_cols] = fit_bt(x[:, style_cols], STYLE_C, None, max_iter, tol, weights=weights)
    offset = x[:, style_cols] @ w[style_cols]
    start = None if w0 is None else w0[~style_cols]
    w[~style_cols] = fit_bt(x[:, ~style_cols], c, start, max_iter, tol, offset, weights)
    return w
