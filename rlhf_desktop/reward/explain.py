"""What the style part of a trained model says, with uncertainty (for the model page).

Laplace approximation: around the fitted weights the Bradley-Terry posterior is about
Gaussian with precision H = Xᵀ diag(p(1 − p)) X + I / C. The style columns' block of H gives
each style weight a standard deviation (conditional on the other weights, so a slight
under-estimate; cheap: a 13 × 13 inverse).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlhf_desktop.reward.style import STYLE_DESCRIPTIONS, STYLE_NAMES


def style_summary(
    x: np.ndarray,
    w_scaled: np.ndarray,
    scale: np.ndarray,
    layout: Sequence[tuple[str, slice]],
    c: float,
) -> dict[str, dict[str, Any]]:
    """Per style feature: weight (logit per unit of the feature), its std, a description.

    ``x``: the scaled difference matrix the model was fitted on; ``w_scaled``: the weights
    in that scale; ``scale``: the per-column divisors. The length block reports as
    ``length`` (log word count, like the style block's ``words``).
    """
    names: list[str] = []
    cols: list[int] = []
    for block, sl in layout:
        if block == "style":
            names += list(STYLE_NAMES)
            cols += list(range(sl.start, sl.stop))
        elif block == "length":
            names.append("length")
            cols.append(sl.start)
    if not cols or len(x) == 0:
        return {}
    from scipy.special import expit  # not at import: the window starts without scipy

    sub = np.asarray(x[:, cols], dtype=np.float64)
    p = expit(np.asarray(x, dtype=np.float64) @ w_scaled)
    precision = (sub.T * (p * (1.0 - p))) @ sub + np.eye(len(cols)) / c
    try:
        std_scaled = np.sqrt(np.clip(np.diag(np.linalg.inv(precision)), 0.0, None))
    except np.linalg.LinAlgError:
        std_scaled = np.full(len(cols), np.nan)
    out: dict[str, dict[str, Any]] = {}
    for name, col, std in zip(names, cols, std_scaled, strict=True):
        out[name] = {
            "weight": float(w_scaled[col] / scale[col]),
            "std": float(std / scale[col]),
            "description": STYLE_DESCRIPTIONS.get(name, "longer replies"),
        }
    return out
