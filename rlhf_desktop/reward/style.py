"""The style block: a few named, human-readable features of a reply's form.

In the spirit of Chatbot Arena's style control (FastChat ``elo_analysis.py``): how long a reply
is, how it is laid out (headers, list items, bold, code blocks), whether it asks back, refuses
or apologises, repeats itself or stops mid-sentence, and how much of the prompt it takes up.
Counts enter as log(1 + count), so a Bradley-Terry weight on a difference reads as "per
doubling". Each column has a name, so the model can say in words what it learned.

Everything here is plain text processing: no embeddings, no I/O, stable across processes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

STYLE_NAMES: tuple[str, ...] = (
    "words",          # log(1 + words)
    "headers",        # log(1 + markdown header lines)
    "list_items",     # log(1 + bulleted or numbered lines)
    "bold",           # log(1 + **bold** spans)
    "code_blocks",    # log(1 + fenced code blocks)
    "questions",      # log(1 + question marks): asking back
    "refusal",        # 1 when it declines ("I can't", "I won't", "as an AI" ...)
    "apology",        # 1 when it apologises ("sorry", "I apologize")
    "paragraphs",     # log(1 + blank-line separated paragraphs)
    "repetition",     # 1 − distinct words / words (loops of small models)
    "unfinished",     # 1 when the last character is not an end of sentence
    "prompt_overlap",  # share of the prompt's content words that the reply uses
)
STYLE_DIM = len(STYLE_NAMES)

# Plain-words descriptions for the model page ("you prefer ... ").
STYLE_DESCRIPTIONS: dict[str, str] = {
    "words": "longer replies",
    "headers": "headers",
    "list_items": "lists",
    "bold": "bold text",
    "code_blocks": "code blocks",
    "questions": "replies that ask you questions",
    "refusal": "replies that decline",
    "apology": "replies that apologise",
    "paragraphs": "more paragraphs",
    "repetition": "repetitive replies",
    "unfinished": "replies cut off mid-sentence",
    "prompt_overlap": "replies that reuse your prompt's words",
}

_WORD = re.compile(r"\w+")
_CONTENT_WORD = re.compile(r"\w{4,}")
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s+\S", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
_PARAGRAPH = re.compile(r"\n\s*\n")
_REFUSAL = re.compile(
    r"\b(?:i\s+(?:can(?:'|’)?t|cannot|can not|won(?:'|’)?t|will not|am not able|'m not able|"
    r"am unable|'m unable|must decline|do not feel comfortable|don(?:'|’)?t feel comfortable)"
    r"|as an ai\b|i(?:'|’)?m (?:just )?an ai\b|not (?:appropriate|ethical|legal) (?:for me )?to)",
    re.IGNORECASE,
)
_APOLOGY = re.compile(r"\b(?:sorry|apologi[sz]e|apologies)\b", re.IGNORECASE)
_ENDS = set(".!?)]}\"'`*:;…”’>|")


def _log_count(n: int) -> float:
    return math.log1p(n)


def style_row(reply: str, prompt: str = "") -> list[float]:
    """The style features of one reply (in :data:`STYLE_NAMES` order)."""
    words = _WORD.findall(reply.lower())
    fences = len(_FENCE.findall(reply))
    stripped = reply.rstrip()
    prompt_words = set(_CONTENT_WORD.findall(prompt.lower()))
    overlap = (len(prompt_words & set(words)) / len(prompt_words)) if prompt_words else 0.0
    return [
        _log_count(len(words)),
        _log_count(len(_HEADER.findall(reply))),
        _log_count(len(_LIST_ITEM.findall(reply))),
        _log_count(len(_BOLD.findall(reply))),
        _log_count(fences // 2),
        _log_count(reply.count("?")),
        1.0 if _REFUSAL.search(reply) else 0.0,
        1.0 if _APOLOGY.search(reply) else 0.0,
        _log_count(len(_PARAGRAPH.split(stripped)) if stripped else 0),
        (1.0 - len(set(words)) / len(words)) if words else 0.0,
        0.0 if not stripped or stripped[-1] in _ENDS else 1.0,
        overlap,
    ]


def style_features(replies: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
    """One row of style features per reply; ``prompts`` (same length, or None) for overlap."""
    if prompts is None:
        prompts = [""] * len(replies)
    out = np.zeros((len(replies), STYLE_DIM), dtype=np.float32)
    for row, (reply, prompt) in enumerate(zip(replies, prompts, strict=True)):
        out[row] = style_row(reply, prompt)
    return out
