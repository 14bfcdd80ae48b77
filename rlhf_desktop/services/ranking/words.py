"""What the reward model learned about style, in plain words (for the model page).

Training stores, per style feature, its weight (logit per unit of the feature) and a Laplace
standard deviation (``metrics["style"]``, see :mod:`rlhf_desktop.reward.explain`). Here each
becomes an *effect* for a unit a person can picture (twice the words, one refusal, a fifth
more of the prompt's words) and a sentence: "you prefer longer replies (2× the words:
+0.40 logit)", or "lists: no clear effect" when the effect is small or within its noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LN2 = math.log(2.0)
CLEAR_Z = 2.0
"""An effect counts as found when it is at least this many standard deviations from 0 …"""
CLEAR_LOGIT = 0.05
"""… and at least this large (logit), so a tiny but sure effect is not reported as taste."""


@dataclass(frozen=True)
class Wording:
    """How one feature reads: a noun, what a positive/negative weight means, the unit."""

    noun: str
    more: str
    less: str
    unit: str
    per_unit: float


WORDINGS: dict[str, Wording] = {
    "words": Wording("length", "longer replies", "shorter replies", "2× the words", LN2),
    "headers": Wording("headers", "replies with headers", "replies without headers",
                       "2× the headers", LN2),
    "list_items": Wording("lists", "replies with lists", "replies without lists",
                          "2× the list items", LN2),
    "bold": Wording("bold text", "bold text", "less bold text", "2× the bold spans", LN2),
    "code_blocks": Wording("code blocks", "code blocks", "fewer code blocks",
                           "2× the code blocks", LN2),
    "questions": Wording("questions back", "replies that ask you questions",
                         "replies that do not ask back", "2× the question marks", LN2),
    "refusal": Wording("refusals", "replies that decline", "replies that do not decline",
                       "a refusal", 1.0),
    "apology": Wording("apologies", "replies that apologise", "replies without apologies",
                       "an apology", 1.0),
    "paragraphs": Wording("paragraphs", "more paragraphs", "fewer paragraphs",
                          "2× the paragraphs", LN2),
    "repetition": Wording("repetition", "repetitive replies",
                          "replies that do not repeat themselves", "+20 % repeated words", 0.2),
    "unfinished": Wording("cut-off endings", "replies cut off mid-sentence",
                          "replies that finish their sentences", "a cut-off ending", 1.0),
    "prompt_overlap": Wording("echoing your prompt", "replies that reuse your prompt's words",
                              "replies in their own words", "+20 % of your prompt's words",
                              0.2),
}


@dataclass(frozen=True)
class StylePreference:
    """One learned style preference, ready to show."""

    name: str
    """The feature (:data:`rlhf_desktop.reward.style.STYLE_NAMES`; ``words`` holds length)."""
    noun: str
    unit: str
    effect: float
    """Logit for one ``unit`` (positive: the user prefers more of it)."""
    std: float
    """Standard deviation of ``effect`` (Laplace; NaN when it could not be computed)."""
    clear: bool
    sentence: str


def describe(name: str, effect: float, std: float) -> StylePreference:
    """The preference for one feature, from its effect per unit and that effect's std."""
    wording = WORDINGS.get(name) or Wording(name.replace("_", " "), f"more {name}",
                                            f"less {name}", "one unit", 1.0)
    noisy = math.isnan(std) or abs(effect) < CLEAR_Z * std
    clear = not noisy and abs(effect) >= CLEAR_LOGIT
    figure = f"{wording.unit}: {signed(effect)} logit"
    if clear:
        liked = wording.more if effect > 0 else wording.less
        sentence = f"you prefer {liked} ({figure})"
    else:
        spread = "" if math.isnan(std) else f" ± {std:.2f}"
        sentence = f"{wording.noun}: no clear effect ({figure}{spread})"
    return StylePreference(name=name, noun=wording.noun, unit=wording.unit, effect=effect,
                           std=std, clear=clear, sentence=sentence)


def preferences(style: Mapping[str, Mapping[str, Any]]) -> list[StylePreference]:
    """Every feature of ``metrics["style"]`` described; found effects first, largest first.

    ``length`` (the length block) and ``words`` (the style block's log word count) measure
    the same thing, so they are added into one "length" preference (their stds combined as
    if independent)."""
    merged: dict[str, tuple[float, float]] = {}
    for name, entry in style.items():
        key = "words" if name == "length" else name
        weight = float(entry.get("weight", 0.0))
        std = float(entry.get("std", math.nan))
        if key in merged:
            w0, s0 = merged[key]
            merged[key] = (w0 + weight, math.hypot(s0, std))
        else:
            merged[key] = (weight, std)
    out = []
    for name, (weight, std) in merged.items():
        per_unit = (WORDINGS[name].per_unit if name in WORDINGS else 1.0)
        out.append(describe(name, weight * per_unit, std * per_unit))
    out.sort(key=lambda p: (not p.clear, -abs(p.effect)))
    return out


def driver_text(name: str, logit: float) -> str:
    """One style driver of a card, e.g. "longer replies +0.21"."""
    wording = WORDINGS.get(name)
    what = name.replace("_", " ") if wording is None else wording.noun
    return f"{what} {signed(logit)}"


def signed(value: float) -> str:
    """``+0.40`` / ``−0.40`` (a real minus sign)."""
    return f"{value:+.2f}".replace("-", "\u2212")
