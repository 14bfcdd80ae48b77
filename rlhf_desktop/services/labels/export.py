"""Exports beyond one pair per line: every label of the chat per turn (ties and all-bad
flags included, which make no pairs), and every full ranking as one line.

The labels file has one JSON object per label::

    {"prompt": "...", "prompt_messages": [...], "completions": ["...", ...],
     "label_kind": "pick" | "tie" | "all_bad" | "edit" | "ranking",
     "chosen": 1, "tied": [0, 2], "ranking": [2, 0, 1] | null, "all_bad": false,
     "edited": "..." | null, "reason": "..." | null,
     "metadata": {"provider", "model", "temperature", "seed", "blind", "time_to_pick_s",
                  "reward_model_version", "scores": [...], "positions": [...],
                  "origins": [...], ...}}

``completions`` are the model's replies in the provider's order; ``chosen``, ``tied`` and
``ranking`` (best first) index into them (``chosen`` is null for an all-bad flag and for an
edit, whose text is in ``edited`` with ``metadata.edited_from``). ``reason`` is the line the
user wrote under the turn ("What was wrong?" after all bad, why a pick), null when none: an
all-bad flag makes no pairs, so this file is the only export that carries its reason.
``scores``, ``positions`` and ``origins`` (the arena source of each reply) are per
completion, as they were when the user labeled the turn; each is null instead of a list when
nothing is known (no reward model yet, no arena).

The ranking file (``--format ranking``) has one line per ranking label, and only for
ranking labels (a pick is not written as a partial ranking: its pairs are in the pair
formats)::

    {"prompt": "...", "prompt_messages": [...], "completions": ["...", ...],
     "ranking": [2, 0, 1], "unranked": [], "metadata": {...}}

``completions`` are the replies the ranking compares, in the provider's order (so the file
does not give the order away by position): the ranked ones and the whole replies the user
left unranked; failed, stopped and empty replies are left out, as from the pairs.
``ranking`` indexes into ``completions``, best first. A partial ranking (the top k) lists
only the ranked replies; ``unranked`` holds the rest, which count as tied below the last
ranked one (its pairs say the same).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.core.pick_rules import is_whole_reply
from rlhf_desktop.domain import Candidate, PreferencePair, Turn
from rlhf_desktop.storage.repo import Repository

__all__ = ["export_labels", "group_of", "in_test", "label_records", "pair_group",
           "ranking_records"]


def _labeled_turns(repo: Repository) -> Iterator[tuple[int, Turn, dict[str, Any]]]:
    """Every chat label with its turn and provenance, oldest first."""
    for label_id, turn in repo.labels.of_chat():
        facts = repo.provenance.of_labels([label_id]).get(label_id)
        if facts is not None:
            yield label_id, turn, facts


def _label_metadata(label_id: int, turn: Turn, facts: dict[str, Any],
                    replies: list[Candidate]) -> dict[str, Any]:
    """The provenance of a label, per reply where it is per reply."""
    return {
        "label_id": label_id,
        "conversation_id": turn.conversation_id,
        "turn_id": turn.id,
        "provider": facts["provider"],
        "model": facts["model"],
        "temperature": facts["temperature"],
        "seed": facts["seed"],
        "blind": facts["blind"],
        "time_to_pick_s": facts["time_to_pick_s"],
        "reward_model_version": facts["reward_model_version"],
        "scores": _per_reply([facts["scores"].get(c.id) for c in replies]),
        "positions": _per_reply([facts["positions"].get(c.id) for c in replies]),
        "origins": _per_reply([c.origin for c in replies]),
    }


def _per_reply(values: list[Any]) -> list[Any] | None:
    """A per-reply list, or null when nothing is known for any reply: pyarrow's JSON reader
    (``datasets.load_dataset("json")``, pyarrow 26) builds an invalid table from a list
    whose items are all null."""
    return None if all(v is None for v in values) else values


def label_records(repo: Repository) -> Iterator[dict[str, Any]]:
    """One record per label given in the chat, oldest first (see the module docstring)."""
    for label_id, turn, facts in _labeled_turns(repo):
        generated = [c for c in turn.candidates if c.source != "edit"]
        index_of = {c.id: i for i, c in enumerate(generated)}
        edit = next((c for c in turn.candidates
                     if c.source == "edit" and c.id == turn.chosen_candidate_id), None)
        kind = facts["label_kind"]
        chosen = None if kind in ("all_bad", "edit") else index_of.get(turn.chosen_candidate_id)
        order = facts.get("ranking") or []
        metadata = _label_metadata(label_id, turn, facts, generated)
        metadata["edited_from"] = None if edit is None else index_of.get(edit.edited_from)
        yield {
            "prompt": turn.prompt,
            "prompt_messages": [m.to_dict() for m in turn.messages],
            "completions": [c.text for c in generated],
            "label_kind": kind,
            "chosen": chosen,
            "tied": [index_of[c] for c in facts["tied"] if c in index_of],
            "ranking": ([index_of[c] for c in order if c in index_of]
                        if kind == "ranking" else None),
            "all_bad": kind == "all_bad",
            "edited": None if edit is None else edit.text,
            "reason": facts.get("reason"),
            "metadata": metadata,
        }


def ranking_records(repo: Repository) -> Iterator[dict[str, Any]]:
    """One line per ranking label, oldest first (see the module docstring)."""
    for label_id, turn, facts in _labeled_turns(repo):
        order = facts.get("ranking") or []
        if facts["label_kind"] != "ranking" or len(order) < 2:
            continue
        ranked = set(order)
        compared = [c for c in turn.candidates if c.source != "edit"
                    and (c.id in ranked or is_whole_reply(c))]
        index_of = {c.id: i for i, c in enumerate(compared)}
        yield {
            "prompt": turn.prompt,
            "prompt_messages": [m.to_dict() for m in turn.messages],
            "completions": [c.text for c in compared],
            "ranking": [index_of[c] for c in order if c in index_of],
            "unranked": [i for i, c in enumerate(compared) if c.id not in ranked],
            "metadata": _label_metadata(label_id, turn, facts, compared),
        }


def export_labels(repo: Repository, path: str | os.PathLike[str]) -> int:
    """Write every chat label (one line each) to ``path`` atomically; returns how many."""
    buffer = io.StringIO()
    count = 0
    for record in label_records(repo):
        buffer.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    config.atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8"))
    return count


def pair_group(pair: PreferencePair) -> str:
    """What stays together in a split: the conversation (else the label, for imported
    pairs)."""
    meta = pair.metadata or {}
    if meta.get("conversation_id") is not None:
        return f"conversation:{meta['conversation_id']}"
    return f"label:{pair.label_id}"


def group_of(record: dict[str, Any]) -> str:
    """:func:`pair_group` of a labels-file or ranking line (they always have a turn)."""
    return f"conversation:{record['metadata']['conversation_id']}"


def in_test(group: str, test_share: float, seed: int) -> bool:
    """Whether a group goes to the test file (a stable hash, so a re-export agrees)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_share
