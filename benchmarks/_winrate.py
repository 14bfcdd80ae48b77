"""Statistics of the win-rate benchmark (benchmarks/tune_winrate.py), unit-tested in
tests/test_bench_tune_winrate.py."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

BOOTSTRAP = 10_000

def outcomes(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Per prompt: 1 when ``a`` scores higher, 0 when lower, 0.5 on a tie."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.where(x > y, 1.0, np.where(x < y, 0.0, 0.5))


def bootstrap_ci(values: Sequence[float] | np.ndarray, resamples: int = BOOTSTRAP, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (resampling the prompts)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def win_rate(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Win rate of ``a`` over ``b`` (ties half) with its bootstrap 95 % CI, in %."""
    o = outcomes(a, b)
    low, high = bootstrap_ci(o, seed=seed)
    return {"win_rate": round(100 * float(o.mean()), 1), "ci95": [round(100 * low, 1),
                                                                   round(100 * high, 1)],
            "wins": int((o == 1).sum()), "losses": int((o == 0).sum()),
            "ties": int((o == 0.5).sum()), "n": int(o.size)}


def mean_gain(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Mean of ``a - b`` over prompts with its bootstrap 95 % CI."""
    diff = np.subtract(a, b)
    low, high = bootstrap_ci(diff, seed=seed)
    return {"mean": round(float(diff.mean()), 4), "ci95": [round(low, 4), round(high, 4)]}


def split_prompts(keys: Sequence[str], held_out: int, seed: int) -> tuple[set[str], set[str]]:
    """(train, held-out) sets of distinct prompt keys; the held-out ones drawn at random."""
    distinct = sorted(set(keys))
    if held_out >= len(distinct):
        raise ValueError(f"{held_out} held-out prompts asked, only {len(distinct)} distinct")
    random.Random(seed).shuffle(distinct)
    return set(distinct[held_out:]), set(distinct[:held_out])
