"""Pairs for tuning: read any file the app imports, check each against ``max_length``.

TRL's DPOTrainer silently drops a pair whose prompt alone fills ``max_length`` and cuts the
replies of a pair that is too long. Here every pair is measured first with the model's own
chat template, exactly as TRL tokenises it; the pairs that would be dropped are left out
*and listed*, the ones that will be cut are listed too (``data-report.json`` in the run
folder, and a ``data`` progress event).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlhf_desktop.services.formats import parse_lines
from rlhf_desktop.tune.options import TuneConfigError


@dataclass
class PairLength:
    """Token counts of one pair (``line`` is its 1-based line in the data file)."""

    line: int
    prompt_tokens: int
    chosen_tokens: int
    rejected_tokens: int
    preview: str = ""
    """The start of the last user message, to find the pair in the dataset view."""


@dataclass
class DataReport:
    """What happens to each pair of the data file at this ``max_length``."""

    file: str
    max_length: int
    pairs: int
    used: int
    dropped_prompt_too_long: list[PairLength] = field(default_factory=list)
    truncated: list[PairLength] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)

    def summary(self) -> str:
        """One line for people."""
        text = f"{self.used} of {self.pairs} pairs used at max_length {self.max_length}"
        if self.dropped_prompt_too_long:
            lines = ", ".join(str(p.line) for p in self.dropped_prompt_too_long[:10])
            more = "…" if len(self.dropped_prompt_too_long) > 10 else ""
            text += (f"; {len(self.dropped_prompt_too_long)} left out because the prompt alone "
                     f"is too long (lines {lines}{more}; raise max_length to use them)")
        if self.truncated:
            text += f"; {len(self.truncated)} with replies cut at max_length"
        return text


def read_pairs(path: str | Path, system_prompt: str = "") -> list[dict[str, Any]]:
    """The file's pairs as TRL conversational records, each with its ``line`` number."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise TuneConfigError(f"data file {file} does not exist; write one with "
                              f"`rlhf-desktop export --format trl-conversational -o FILE`")
    with file.open("rb") as fh:
        lines = list(fh)
    parsed = parse_lines(lines)
    if parsed.errors:
        shown = "; ".join(f"line {e.line}: {e.message}" for e in parsed.errors[:5])
        raise TuneConfigError(f"{file} has {len(parsed.errors)} bad line(s), nothing was "
                              f"trained: {shown}")
    if not parsed.pairs:
        raise TuneConfigError(f"{file} holds no pairs")
    numbers = [i for i, raw in enumerate(lines, start=1) if raw.strip()]
    records = []
    for number, pair in zip(numbers, parsed.pairs, strict=True):
        prompt = [m.to_dict() for m in pair.prompt]
        if system_prompt and not any(m["role"] == "system" for m in prompt):
            prompt.insert(0, {"role": "system", "content": system_prompt})
        records.append({
            "line": number,
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        })
    return records


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=generation_prompt)
    return list(out["input_ids"])


def measure(record: dict[str, Any], tokenizer: Any) -> PairLength:
    """Token counts as TRL computes them (the prompt ends where the sequences diverge)."""
    prompt = _ids(tokenizer, record["prompt"], True)
    chosen = _ids(tokenizer, record["prompt"] + record["chosen"], False)
    rejected = _ids(tokenizer, record["prompt"] + record["rejected"], False)
    n = min(_common_prefix(prompt, chosen), _common_prefix(prompt, rejected))
    last_user = next((m["content"] for m in reversed(record["prompt"]) if m["role"] == "user"),
                     "")
    preview = " ".join(last_user.split())[:60]
    return PairLength(record["line"], n, len(chosen) - n, len(rejected) - n, preview)


def select(records: list[dict[str, Any]], tokenizer: Any, max_length: int,
           file: str) -> tuple[list[dict[str, Any]], DataReport]:
    """Keep the pairs that fit; report every one left out or cut."""
    report = DataReport(file=file, max_length=max_length, pairs=len(records), used=0)
    kept: list[dict[str, Any]] = []
    for record in records:
        length = measure(record, tokenizer)
        if length.prompt_tokens >= max_length:
            report.dropped_prompt_too_long.append(length)
            continue
        if length.prompt_tokens + max(length.chosen_tokens, length.rejected_tokens) > max_length:
            report.truncated.append(length)
        kept.append(record)
    report.used = len(kept)
    return kept, report


def write_report(report: DataReport, folder: Path) -> Path:
    """``data-report.json`` in the run folder."""
    path = folder / "data-report.json"
    path.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def prompt_group(record: dict[str, Any]) -> str:
    """What keeps pairs together in a held-out split: the system prompt and the first user
    message (the turns of one conversation, and every pair of one ranked turn, share it)."""
    first_user = next((m["content"] for m in record["prompt"] if m["role"] == "user"), "")
    system = next((m["content"] for m in record["prompt"] if m["role"] == "system"), "")
    return "\x00".join((" ".join(system.split()), " ".join(first_user.split())))


def split_by_prompt(records: list[dict[str, Any]], share: float, seed: int
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held out): whole prompt groups, about ``share`` of the pairs held out, in a
    random order fixed by ``seed``; at least one group stays in training."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(prompt_group(record), []).append(record)
    if share <= 0 or len(groups) < 2:
        return list(records), []
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    held_keys: set[str] = set()
    held = 0
    for key in order[:-1]:
        if held >= share * len(records):
            break
        held_keys.add(key)
        held += len(groups[key])
    train = [r for r in records if prompt_group(r) not in held_keys]
    test = [r for r in records if prompt_group(r) in held_keys]
    return train, test


def record_key(record: dict[str, Any]) -> str:
    """The pair's :func:`rlhf_desktop.reward.model.pair_key` (the app's identity of a pair)."""
    from rlhf_desktop.reward.model import pair_key

    last_user = next((m["content"] for m in reversed(record["prompt"]) if m["role"] == "user"),
                     "")
    return pair_key(last_user, record["chosen"][0]["content"], record["rejected"][0]["content"])
