"""Scripted users for the on-policy loop benchmark (benchmarks/loop.py).

A taste is a plain function ``score(prompt: str, reply: str) -> float``: higher is better,
ties allowed. The benchmark never calls a taste on a degenerate reply: :class:`Guards`
(on topic by MiniLM similarity, not cut at max_tokens, not empty) is applied around every
taste, shipped or external (``--taste FILE.py:FUNC``), so a degenerate reply never wins.

Shipped tastes (each one's docstring is also the sentence the "taste in the system prompt"
arm writes into the system prompt):

- ``concise``: close to 50 words.
- ``structured``: a list when the answer has several parts.
- ``no_hedging``: no hedging, apologies or refusals.
- ``warm``: a warm, encouraging tone (a small lexicon; no extra dependency).
- ``hh_gold`` (the harder one): a frozen reward model that the app never trains on (the app's
  :class:`TinyRewardModel` fitted once on all of hh-harmless-dev), with label noise as in
  AlpacaFarm's simulated annotators (a fixed Gaussian perturbation per text, about 25 % of
  close pairs flipped). Built by :func:`gold_taste`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Taste = Callable[[str, str], float]

WORD = re.compile(r"[A-Za-z0-9']+")
LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+\S", re.MULTILINE)
SENTENCE = re.compile(r"[^.!?\n]+[.!?]+")


def words(text: str) -> list[str]:
    """Lower-case word tokens."""
    return [w.lower() for w in WORD.findall(text)]


def concise(prompt: str, reply: str) -> float:
    """Answer in about 50 words: short and complete, no padding."""
    return -abs(len(reply.split()) - 50)


def list_items(reply: str) -> int:
    """Lines that start like a list item (``-``, ``*``, ``1.``, ``2)``)."""
    return len(LIST_LINE.findall(reply))


def structured(prompt: str, reply: str) -> float:
    """When the answer has several parts, give them as a list (one item a line)."""
    items = list_items(reply)
    parts = len(SENTENCE.findall(reply)) + items
    if parts < 3:  # a one- or two-part answer needs no list
        return 0.5
    return min(items, 6) / 6 if items >= 2 else 0.0


HEDGES = (
    "sorry", "apologize", "apologise", "apologies", "as an ai", "language model",
    "i cannot", "i can't", "i can not", "i'm not able", "i am not able", "i'm unable",
    "i am unable", "i don't have", "i do not have", "not sure", "might", "may be",
    "perhaps", "possibly", "it depends", "it's important to note", "it is important to note",
    "consult a", "seek professional", "i would recommend consulting", "however,",
)


def no_hedging(prompt: str, reply: str) -> float:
    """Answer directly and confidently: no apologies, hedging or refusals."""
    text = reply.lower()
    return -float(sum(text.count(h) for h in HEDGES))


WARM = frozenset((
    "great", "wonderful", "happy", "glad", "love", "enjoy", "awesome", "fantastic", "amazing",
    "excellent", "good", "hope", "luck", "welcome", "proud", "exciting", "excited", "fun",
    "delighted", "encourage", "you've", "brilliant", "congratulations", "thanks", "thank",
    "kind", "care", "friendly", "cheer", "warm", "success", "confident", "can",
))
COLD = frozenset((
    "unfortunately", "sorry", "cannot", "can't", "not", "no", "never", "bad", "wrong",
    "fail", "difficult", "problem", "illegal", "harmful", "dangerous", "unable", "refuse",
))


def warm(prompt: str, reply: str) -> float:
    """Be warm and encouraging: friendly words, enthusiasm, belief in the user."""
    ws = words(reply)
    if not ws:
        return 0.0
    hits = sum(w in WARM for w in ws) - sum(w in COLD for w in ws)
    return (hits + 0.5 * min(reply.count("!"), 3)) / np.sqrt(len(ws))


SHIPPED: dict[str, Taste] = {"concise": concise, "structured": structured,
                             "no_hedging": no_hedging, "warm": warm}
"""The tastes selectable by name (``hh_gold`` is built by :func:`gold_taste`)."""


def describe(taste: Taste) -> str:
    """The sentence the system-prompt arm adds: the docstring's first line."""
    doc = (taste.__doc__ or "").strip().splitlines()
    return doc[0].strip() if doc else ""


def load_external(spec: str) -> tuple[str, Taste]:
    """``FILE.py:FUNC`` (any file, also outside the project) → (name, function)."""
    file, _, func = spec.rpartition(":")
    path = Path(file).expanduser().resolve()
    if not file or not func or path.suffix != ".py" or not path.is_file():
        raise ValueError(f"--taste {spec!r}: give a shipped name ({', '.join(SHIPPED)}, "
                         f"hh_gold) or FILE.py:FUNC with an existing file")
    module_name = "loop_taste_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ValueError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec_obj)
    spec_obj.loader.exec_module(module)
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ValueError(f"{path} has no function {func!r}")
    return f"{path.stem}:{func}", fn


# ---------------------------------------------------------------- guards


@dataclass
class Guards:
    """What every taste requires: not empty, not cut at max_tokens, on topic (MiniLM cosine
    similarity of prompt and reply at least ``floor``)."""

    embed: Callable[[list[str]], np.ndarray]
    floor: float = 0.15

    def similarity(self, prompts: list[str], replies: list[str]) -> np.ndarray:
        """Cosine similarity per (prompt, reply) (the vectors are unit length)."""
        if not prompts:
            return np.zeros(0)
        a, b = self.embed(prompts), self.embed(replies)
        return np.asarray((a * b).sum(axis=1), dtype=float)

    def degenerate(self, replies: list[str], finishes: list[str | None],
                   similarity: np.ndarray) -> list[bool]:
        """Per reply: empty, cut at max_tokens, or off topic."""
        return [not r.strip() or f == "length" or bool(s < self.floor)
                for r, f, s in zip(replies, finishes, similarity, strict=True)]


DEGENERATE = float("-inf")


def guarded_scores(taste: Taste, prompt: str, replies: list[str],
                   degenerate: list[bool]) -> list[float]:
    """The taste's scores, ``-inf`` for a degenerate reply (two degenerate replies tie)."""
    return [DEGENERATE if bad else float(taste(prompt, r))
            for r, bad in zip(replies, degenerate, strict=True)]


# ---------------------------------------------------------------- the harder taste


def noise(prompt: str, reply: str, sigma: float) -> float:
    """A fixed Gaussian perturbation per (prompt, reply): the same text always reads the
    same, as one simulated annotator would."""
    digest = hashlib.sha256(f"{prompt}\x00{reply}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0, sigma))


def gold_taste(model: Any, sigma: float) -> Taste:
    """``hh_gold``: the frozen HH reward model's score plus fixed per-text noise."""

    def hh_gold(prompt: str, reply: str) -> float:
        """Answer as a careful, harmless and helpful assistant would."""
        return float(model.score(prompt, [reply])[0]) + noise(prompt, reply, sigma)

    return hh_gold


def sigma_for_flips(margins: np.ndarray, flip: float = 0.25) -> float:
    """The noise level at which a pair with the median absolute score margin flips with
    probability ``flip`` (each side gets N(0, σ²), so the difference has σ√2)."""
    from statistics import NormalDist

    m = float(np.median(np.abs(margins))) if margins.size else 1.0
    z = NormalDist().inv_cdf(1 - flip)
    return m / (z * np.sqrt(2)) if m > 0 else 1.0
