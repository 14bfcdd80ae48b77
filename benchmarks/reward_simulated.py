"""Simulated users: rule-based tastes label real reply pairs; how fast does the model follow?

The replies are the real ones of every shared set (pairs of replies to the same prompt). A
rule-based user labels a pair by its rule; only pairs on which the rule decides are used
(a code lover has nothing to say about two replies without code). Users:

- ``short`` / ``long``: fewer / more words;
- ``code``: more fenced code blocks or inline code spans;
- ``lists``: more list items;
- ``hh_crowd``: the HH crowdworkers' own labels (HH pairs only);
- ``flip``: ``long`` for its first 100 labels, ``short`` after.

Agreement after k labels = pairwise accuracy on held-out pairs of the same user (pairs never
labelled). For ``flip``: after 100 ``long`` labels, agreement with the new taste after j more
labels, and the fewest j at which the model agrees with the new taste on most pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.style import STYLE_NAMES, style_row
from rlhf_desktop.reward.training import TrainConfig, pair_matrix, pairwise_accuracy, train

KS: tuple[int, ...] = (8, 16, 32, 64, 128)
FLIP_AFTER = 100
FLIP_STEPS: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
TEST = 300
_INLINE_CODE = re.compile(r"`[^`\n]+`")

Rule = Callable[[str], float]


def _words(text: str) -> float:
    return float(len(text.split()))


def _code(text: str) -> float:
    row = style_row(text)
    return row[STYLE_NAMES.index("code_blocks")] * 10 + len(_INLINE_CODE.findall(text))


def _lists(text: str) -> float:
    return style_row(text)[STYLE_NAMES.index("list_items")]


RULES: dict[str, tuple[Rule, int]] = {  # value of a reply, and +1 (more wins) or −1
    "short": (_words, -1),
    "long": (_words, +1),
    "code": (_code, +1),
    "lists": (_lists, +1),
}


def labelled(pairs: Sequence[PreferencePair], rule: Rule, sign: int) -> list[PreferencePair]:
    """The pairs on which the rule decides, oriented as the rule labels them."""
    out: list[PreferencePair] = []
    for p in pairs:
        diff = sign * (rule(p.chosen) - rule(p.rejected))
        if diff > 0:
            out.append(p)
        elif diff < 0:
            out.append(PreferencePair(prompt=p.prompt, chosen=p.rejected, rejected=p.chosen))
    return out


def _accuracy(train_pairs: list[PreferencePair], test_pairs: list[PreferencePair],
              embedder: Embedder) -> float:
    model = train(train_pairs, TrainConfig(), embedder).model
    assert model.weights is not None
    return pairwise_accuracy(pair_matrix(test_pairs, model.features, embedder).diffs
                             @ model.weights)


def _curve(stream: list[PreferencePair], embedder: Embedder, seeds: Sequence[int]
           ) -> dict[str, Any]:
    rows: dict[str, list[float]] = {str(k): [] for k in KS}
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(stream))
        test = [stream[i] for i in order[:TEST]]
        rest = [stream[i] for i in order[TEST:]]
        for k in KS:
            if k <= len(rest):
                rows[str(k)].append(_accuracy(rest[:k], test, embedder))
    return {"pairs": len(stream), "agreement": {k: float(np.mean(v)) for k, v in rows.items()
                                                if v}}


def simulated_users(sets: dict[str, list[PreferencePair]], embedder: Embedder,
                    seeds: Sequence[int]) -> dict[str, Any]:
    """Agreement after k labels per user, and the flip user's recovery."""
    everything = [p for pairs in sets.values() for p in pairs]
    out: dict[str, Any] = {"users": {}}
    for name, (rule, sign) in RULES.items():
        stream = labelled(everything, rule, sign)
        out["users"][name] = (_curve(stream, embedder, seeds) if len(stream) > TEST + 16
                              else {"pairs": len(stream), "agreement": {},
                                    "note": "too few pairs on which this rule decides"})
    hh = next((pairs for name, pairs in sets.items() if name.startswith("hh")), [])
    if hh:
        out["users"]["hh_crowd"] = _curve(list(hh), embedder, seeds)
    long_stream = labelled(everything, _words, +1)
    flip: dict[str, list[float]] = {str(j): [] for j in FLIP_STEPS}
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(long_stream))
        test = [PreferencePair(prompt=p.prompt, chosen=p.rejected, rejected=p.chosen)
                for p in (long_stream[i] for i in order[:TEST])]  # the new taste: shorter
        before = [long_stream[i] for i in order[TEST : TEST + FLIP_AFTER]]
        after_pool = [PreferencePair(prompt=p.prompt, chosen=p.rejected, rejected=p.chosen)
                      for p in (long_stream[i] for i in order[TEST + FLIP_AFTER:])]
        for j in FLIP_STEPS:
            flip[str(j)].append(_accuracy(before + after_pool[:j], test, embedder))
    means = {j: float(np.mean(v)) for j, v in flip.items()}
    followed = next((int(j) for j, acc in means.items() if acc > 0.5), None)
    followed_70 = next((int(j) for j, acc in means.items() if acc >= 0.7), None)
    out["flip"] = {"before": FLIP_AFTER, "agreement_with_new_taste": means,
                   "labels_to_follow": followed, "labels_to_70": followed_70}
    return out


def markdown(sim: dict[str, Any]) -> list[str]:
    """Lines of the simulated-user subsection."""
    lines = ["### Simulated users", "",
             "Rule-based users label real reply pairs of the shared sets (only pairs on which "
             "their rule decides); agreement = pairwise accuracy (%) of the default model on "
             f"{TEST} held-out pairs of the same user after k labels. See "
             "`benchmarks/reward_simulated.py`.", "",
             "| user | pairs | " + " | ".join(f"k = {k}" for k in KS) + " |",
             "|---|---|" + "---|" * len(KS)]
    for name, user in sim["users"].items():
        cells = [f"{100 * user['agreement'][str(k)]:.1f}" if str(k) in user["agreement"]
                 else "–" for k in KS]
        note = f" ({user['note']})" if user.get("note") else ""
        lines.append(f"| {name}{note} | {user['pairs']} | " + " | ".join(cells) + " |")
    flip = sim["flip"]
    lines += ["", f"A user who prefers longer replies for {flip['before']} labels and shorter "
              "ones after: agreement with the new taste after j labels of it: " + ", ".join(
                  f"{j}: {100 * a:.1f} %" for j, a in flip["agreement_with_new_taste"].items())
              + f". The model follows the flip (> 50 %) after {flip['labels_to_follow']} "
              f"labels and reaches 70 % after {flip['labels_to_70']}.", ""]
    return lines
