"""A prior fitted on public data that the user's own labels can overrule.

The prior is a reward model trained on *other* human-labelled sets. It enters the user's
model as one extra score whose weight ``a`` is fitted on the user's labels only:
margin = own margin + a × prior margin, with ``a`` fitted by Bradley-Terry on the user's
cross-validated (out-of-fold) own margins, so ``a`` measures what the prior adds beyond what
the user's own model already knows. ``a`` may come out negative or zero: a prior whose taste
runs the other way (HH harmless "shorter wins" against a helpfulness user) is turned around
or switched off by the user's labels instead of dragging them down.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.model import TinyRewardModel
from rlhf_desktop.reward.training import TrainConfig, pair_matrix, train

PRIOR_C = 1.0  # L2 on the prior's weight a: a² / (2 C)

Method = Callable[[list[PreferencePair], list[PreferencePair]], np.ndarray]


def fit_prior(pairs: Sequence[PreferencePair], embedder: Embedder) -> TinyRewardModel:
    """The prior: the default model trained on every pair of the public sets."""
    return train(pairs, TrainConfig(), embedder).model


def _margins(model: TinyRewardModel, pairs: Sequence[PreferencePair], embedder: Embedder
             ) -> np.ndarray:
    assert model.weights is not None
    return pair_matrix(pairs, model.features, embedder).diffs @ model.weights


def prior_weight(own_oof: np.ndarray, prior: np.ndarray) -> float:
    """The prior's weight a: Bradley-Terry on the user's pairs with own margins fixed."""
    if not np.any(prior):
        return 0.0

    def loss(a: float) -> float:
        return float(np.logaddexp(0.0, -(own_oof + a * prior)).sum() + a * a / (2 * PRIOR_C))

    return float(minimize_scalar(loss, bounds=(-20.0, 20.0), method="bounded").x)


def with_prior(train_pairs: list[PreferencePair], test_pairs: list[PreferencePair],
               prior: TinyRewardModel, embedder: Embedder) -> np.ndarray:
    """Own model + a × prior, a fitted on the user's labels."""
    result = train(train_pairs, TrainConfig(), embedder)
    own_test = _margins(result.model, test_pairs, embedder)
    oof = result.oof_margins if result.oof_margins is not None else np.zeros(len(train_pairs))
    a = prior_weight(oof, _margins(prior, train_pairs, embedder))
    return np.asarray(own_test + a * _margins(prior, test_pairs, embedder))


def prior_only(_train: list[PreferencePair], test_pairs: list[PreferencePair],
               prior: TinyRewardModel, embedder: Embedder) -> np.ndarray:
    """The prior alone, as a user with no labels would get it."""
    return _margins(prior, test_pairs, embedder)


def prior_methods(prior: TinyRewardModel, embedder: Embedder) -> dict[str, Method]:
    """The two prior methods for one target set."""
    return {
        "prior_only": functools.partial(prior_only, prior=prior, embedder=embedder),
        "with_prior": functools.partial(with_prior, prior=prior, embedder=embedder),
    }
