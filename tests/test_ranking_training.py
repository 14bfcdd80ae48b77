"""Pair weights in the reward model's fit (a ranking's pairs weigh 2/N): the loss and its
gradient, the cross-validation fits, the temperature and the accuracies all use them, and
with every weight 1 the fit is exactly the unweighted one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.reward.bt_fit import fit_bt, fit_temperature, pairwise_accuracy
from rlhf_desktop.reward.training import TrainConfig, TrainingError, train
from tests.fakes import HashEmbedder


def test_a_pair_of_weight_2_pulls_the_fit_like_the_same_pair_twice() -> None:
    rng = np.random.default_rng(3)
    diffs = rng.normal(size=(30, 5))
    weights = rng.integers(1, 4, size=30).astype(float)
    repeated = np.repeat(diffs, weights.astype(int), axis=0)
    weighted = fit_bt(diffs, 0.5, weights=weights, tol=1e-12, max_iter=2000)
    assert np.allclose(weighted, fit_bt(repeated, 0.5, tol=1e-12, max_iter=2000), atol=1e-3)
    assert not np.allclose(weighted, fit_bt(diffs, 0.5, tol=1e-12, max_iter=2000), atol=1e-2)


def test_weights_of_1_are_the_unweighted_fit_bit_for_bit() -> None:
    diffs = np.random.default_rng(4).normal(size=(40, 6))
    assert np.array_equal(fit_bt(diffs, 0.3), fit_bt(diffs, 0.3, weights=np.ones(40)))


def test_weighted_accuracy_and_temperature() -> None:
    margins = np.array([2.0, -1.0, 0.0, 3.0])
    assert pairwise_accuracy(margins) == pytest.approx(2.5 / 4)
    assert pairwise_accuracy(margins, np.array([0.5, 2.0, 1.0, 0.5])) == pytest.approx(1.5 / 4)
    rng = np.random.default_rng(5)
    held_out = rng.normal(1.0, 2.0, 400)
    assert fit_temperature(held_out, np.ones(400)) == fit_temperature(held_out)
    flipped = np.where(np.arange(400) % 2 == 0, np.abs(held_out), -np.abs(held_out))
    right = (flipped > 0).astype(float)
    # weighting up the right half makes sharper (smaller T) margins the likelier ones
    assert fit_temperature(flipped, 1 + 3 * right) < fit_temperature(flipped, 1 + 3 * (1 - right))


def _pair(prompt: str, chosen: str, rejected: str, weight: float) -> PreferencePair:
    return PreferencePair(prompt=(Message("user", prompt),), chosen=chosen, rejected=rejected,
                          weight=weight)


def test_training_follows_the_heavier_of_two_contradicting_pairs() -> None:
    """Each prompt holds a pair and its reverse; only the weights say which side wins. A
    fit that ignored the weights would learn nothing (both orders cancel)."""
    pairs: list[PreferencePair] = []
    for k in range(12):
        prompt = f"question number {k}"
        pairs.append(_pair(prompt, "sunny bright warm answer", "cold grey gloomy answer", 1.0))
        pairs.append(_pair(prompt, "cold grey gloomy answer", "sunny bright warm answer", 0.25))
    embedder = HashEmbedder()
    cfg = TrainConfig(features=("reply",), folds=3)
    result = train(pairs, cfg, embedder)  # type: ignore[arg-type]
    model = result.model
    scores = model.score("question number 99", ["sunny bright warm answer",
                                                "cold grey gloomy answer"])
    assert scores[0] > scores[1] + 1e-3
    m = result.metrics
    assert m["weighted"] is True and m["pair_weight_total"] == pytest.approx(15.0)
    # weighted: the heavy pairs (4/5 of the weight) are right; per pair only half are
    assert m["cv_accuracy"] == pytest.approx(0.8) and m["cv_pair_accuracy"] == pytest.approx(0.5)
    assert m["train_accuracy"] == pytest.approx(0.8)
    flat = train([replace(p, weight=1.0) for p in pairs], cfg, embedder)  # type: ignore[arg-type]
    assert flat.metrics["weighted"] is False
    assert flat.model.weights is not None and np.allclose(flat.model.weights, 0.0, atol=1e-6)


def test_a_negative_weight_is_refused_with_a_clear_message() -> None:
    pairs = [_pair("q", "a good answer", "bad", -1.0)]
    with pytest.raises(TrainingError, match="negative or non-finite weight"):
        train(pairs, TrainConfig(features=("reply",)), HashEmbedder())  # type: ignore[arg-type]
