"""Exports beyond one pair per line: every label of the chat per turn (ties and all-bad
flags included, which make no pairs), and train/test files split by conversation.

The labels file has one JSON object per label::

    {"prompt": "...", "prompt_messages": [...], "completions": ["...", ...],
     "label_kind": "pick" | "tie" | "all_bad" | "edit",
     "chosen": 1, "tied": [0, 2], "all_bad": false, "edited": "..." | null,
     "metadata": {"provider", "model", "temperature", "seed", "blind", "time_to_pick_s",
                  "reward_model_version", "scores": [...], "positions": [...], ...}}

``completions`` are the model's replies in the provider's order; ``chosen`` and ``tied``
index into them (``chosen`` is null for an all-bad flag and for an edit, whose text is in
``edited`` with ``metadata.edited_from``). ``scores`` and ``positions`` are per completion,
as they were when the user labeled the turn.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.services.formats import EXPORT_FORMATS, export_lines
from rlhf_desktop.storage.repo import Repository

__all__ = ["SplitCounts", "export_labels", "label_records", "split_export"]


def label_records(repo: Repository) -> Iterator[dict[str, Any]]:
    """One record per label given in the chat, oldest first (see the module docstring)."""
    for label_id, turn in repo.chat_labels():
        facts = repo.label_provenance([label_id]).get(label_id)
        if facts is None:
            continue
        generated = [c for c in turn.candidates if c.source != "edit"]
        index_of = {c.id: i for i, c in enumerate(generated)}
        edit = next((c for c in turn.candidates
                     if c.source == "edit" and c.id == turn.chosen_candidate_id), None)
        kind = facts["label_kind"]
        chosen = None if kind in ("all_bad", "edit") else index_of.get(turn.chosen_candidate_id)
        yield {
            "prompt": turn.prompt,
            "prompt_messages": [m.to_dict() for m in turn.messages],
            "completions": [c.text for c in generated],
            "label_kind": kind,
            "chosen": chosen,
            "tied": [index_of[c] for c in facts["tied"] if c in index_of],
            "all_bad": kind == "all_bad",
            "edited": None if edit is None else edit.text,
            "metadata": {
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
                "scores": [facts["scores"].get(c.id) for c in generated],
                "positions": [facts["positions"].get(c.id) for c in generated],
                "edited_from": None if edit is None else index_of.get(edit.edited_from),
            },
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


@dataclass(frozen=True)
class SplitCounts:
    """Pairs written to each file of a split export."""

    train: int
    test: int
    train_path: Path
    test_path: Path


def _group(pair: PreferencePair) -> str:
    """What stays together: the conversation (else the label, for imported pairs)."""
    meta = pair.metadata or {}
    if meta.get("conversation_id") is not None:
        return f"conversation:{meta['conversation_id']}"
    return f"label:{pair.label_id}"


def in_test(group: str, test_share: float, seed: int) -> bool:
    """Whether a group goes to the test file (a stable hash, so a re-export agrees)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_share


def split_export(repo: Repository, fmt: str, folder: str | os.PathLike[str],
                 test_share: float = 0.1, seed: int = 0) -> SplitCounts:
    """Export every pair in ``fmt`` to ``folder/train.<ext>`` and ``folder/test.<ext>``,
    split by conversation: every pair of one conversation is in the same file, so no
    conversation leaks from train into test. Imported pairs split by label."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if not 0.0 < test_share < 1.0:
        raise ValueError("the test share must be between 0 and 1 (for example 0.1)")
    train: list[PreferencePair] = []
    test: list[PreferencePair] = []
    for pair in repo.iter_pairs():
        (test if in_test(_group(pair), test_share, seed) else train).append(pair)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ext = "csv" if fmt == "csv" else "jsonl"
    paths = out / f"train.{ext}", out / f"test.{ext}"
    for path, pairs in zip(paths, (train, test), strict=True):
        text = "".join(export_lines(pairs, fmt))
        config.atomic_write_bytes(path, text.encode("utf-8"))
    return SplitCounts(len(train), len(test), *paths)
