"""Tastes for checking a recipe, not for choosing one.

The loop benchmark's shipped tastes (``loop_tastes``) are the ones the project reports on;
its figures will be re-checked with tastes the project does not have. A taste here is one
that no recipe setting was chosen on: it is used only to compare recipes already fixed
(arm 4, the old defaults, against arm 5, the new recipe, head to head), loaded like any
external taste: ``--taste benchmarks/validation_tastes.py:readable``.

The rule for that head-to-head, fixed before its first result: the app goes back to the old
defaults only if arm 4 beats arm 5 with the 95 % interval's lower bound above 50 %; otherwise
the new recipe stays (it also fits the time budget at any number of picks, which one epoch
over every pair does not).

``concrete`` (written 2026-12-07, before its first result) is a second such taste, of another
kind: what a reply says (concrete examples and figures), not how it reads. It decides
nothing: the recipe is fixed. It reports whether arm 5 still wins on a taste that nobody
chose anything on: "wins" means the lower bound of the 95 % interval against the base above
50 %; what it shows on whole replies (neither cut) is reported beside it, with no claim made
in advance.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[A-Za-z']+")
SENTENCE = re.compile(r"[^.!?\n]+[.!?\n]+")
VOWEL_GROUP = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Vowel groups, a silent final e not counted: the usual rough count (at least 1)."""
    return max(1, len(VOWEL_GROUP.findall(word.lower().rstrip("e"))))


def readable(prompt: str, reply: str) -> float:
    """Write in short sentences and simple, everyday words."""
    words = WORD.findall(reply)
    if not words:
        return -1000.0  # below any text (the guards also make an empty reply lose)
    sentences = max(1, len(SENTENCE.findall(reply)))
    per_word = sum(syllables(w) for w in words) / len(words)
    # Flesch reading ease: higher is easier to read; nearly independent of length here
    # (r = -0.11 against the word count on the base model's whole replies).
    return 206.835 - 1.015 * len(words) / sentences - 84.6 * per_word


EXAMPLE = re.compile(r"\b(?:for example|for instance|e\.g\.|such as|imagine|say you)\b|\d+",
                     re.IGNORECASE)


def concrete(prompt: str, reply: str) -> float:
    """Give concrete examples and figures: "for example", "for instance", "such as",
    "imagine", "say you" and every number, per 100 words (a density, so a longer reply does
    not win by length alone), capped at 10. As run (the code is the taste, fixed before its
    result): a numbered list's numbers count as figures, and "e.g." before a space is missed
    (the word boundary after its full stop)."""
    words = WORD.findall(reply)
    if not words:
        return -1000.0
    found = len(EXAMPLE.findall(reply))
    return min(10.0, 100.0 * found / max(len(words), 20))
