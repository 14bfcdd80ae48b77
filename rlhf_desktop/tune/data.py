"""Pairs for tuning: read any file the app imports, fit each into ``max_length``.

TRL's DPOTrainer silently drops a pair whose prompt alone fills ``max_length`` and cuts the
replies of a pair that is too long. A pair from the second or later turn of a chat carries
the whole conversation before it, so at the chat's own length limit most of them would be
dropped. Here every pair is measured first with the model's own chat template, exactly as
TRL tokenises it, and a conversation that does not fit is cut from the left, by whole turns:
the system prompt and the last user message are always kept, then as many of the most recent
earlier turns as leave room for the longer reply (:func:`fit`). A pair that still does not
fit (the system prompt and the last message alone fill ``max_length``) is left out *and
listed*; pairs whose earlier turns were cut, and pairs whose replies TRL will cut, are listed
too (``data-report.json`` in the run folder, and a ``data`` progress event).

``python -m rlhf_desktop.tune.data --data FILE`` prints the same report as JSON without
training (the window's plan counts the pairs a run will use with it, before it starts).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlhf_desktop.core.formats import parse_lines
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
    turns_cut: int = 0
    """Earlier turns (a user message and its reply) cut from the left to make it fit."""


@dataclass
class DataReport:
    """What happens to each pair of the data file at this ``max_length``."""

    file: str
    max_length: int
    pairs: int
    used: int
    dropped_prompt_too_long: list[PairLength] = field(default_factory=list)
    """Left out: the system prompt and the last user message alone fill ``max_length``."""
    truncated: list[PairLength] = field(default_factory=list)
    """Used, with the longer reply cut at ``max_length`` by TRL."""
    context_cut: list[PairLength] = field(default_factory=list)
    """Used, with earlier turns of the conversation cut from the left to fit."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)

    def summary(self) -> str:
        """One line for people."""
        text = f"{self.used} of {self.pairs} pairs used at max_length {self.max_length}"
        if self.context_cut:
            text += (f"; {len(self.context_cut)} with earlier turns of the chat cut to fit "
                     "(the system prompt, the last message and the replies kept)")
        if self.dropped_prompt_too_long:
            lines = ", ".join(str(p.line) for p in self.dropped_prompt_too_long[:10])
            more = "…" if len(self.dropped_prompt_too_long) > 10 else ""
            text += (f"; {len(self.dropped_prompt_too_long)} left out because the system "
                     f"prompt and the last message alone are too long (lines {lines}{more}; "
                     "raise max_length to use them)")
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


def fit(record: dict[str, Any], tokenizer: Any, max_length: int
        ) -> tuple[dict[str, Any], PairLength]:
    """The record with its conversation cut from the left, by whole turns, until the prompt
    and the longer reply fit ``max_length`` (in the chat template's tokens), and its length.
    The system prompt and the last user message are always kept; when even they leave no
    room for the reply, the record comes back with only them (the caller decides)."""
    length = measure(record, tokenizer)
    if length.prompt_tokens + max(length.chosen_tokens, length.rejected_tokens) <= max_length:
        return record, length
    prompt = record["prompt"]
    head = 0
    while head < len(prompt) and prompt[head]["role"] == "system":
        head += 1
    system, rest = prompt[:head], prompt[head:]
    starts = [i for i, m in enumerate(rest) if m["role"] == "user"]
    for cut, start in enumerate(starts[1:], start=1):  # drop the oldest turns first
        trimmed = {**record, "prompt": system + rest[start:]}
        length = measure(trimmed, tokenizer)
        length.turns_cut = cut
        fits = length.prompt_tokens + max(length.chosen_tokens,
                                          length.rejected_tokens) <= max_length
        if fits or start == starts[-1]:
            return trimmed, length
    return record, length  # a single turn: nothing earlier to cut


def select(records: list[dict[str, Any]], tokenizer: Any, max_length: int,
           file: str) -> tuple[list[dict[str, Any]], DataReport]:
    """Fit every pair (:func:`fit`); keep those whose prompt fits; report every pair left
    out, cut from the left, or with replies TRL will cut."""
    report = DataReport(file=file, max_length=max_length, pairs=len(records), used=0)
    kept: list[dict[str, Any]] = []
    for original in records:
        record, length = fit(original, tokenizer, max_length)
        if length.prompt_tokens >= max_length:
            report.dropped_prompt_too_long.append(length)
            continue
        if length.turns_cut:
            report.context_cut.append(length)
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


def load_tokenizer(model: str = "") -> Any:
    """The tokenizer (with its chat template) of the model a run tunes, without loading the
    model: from the GGUF file for the built-in model (as base_model.dequantise saves it),
    else from the transformers folder or hub name."""
    from transformers import AutoTokenizer

    if not model or model.lower().endswith(".gguf"):
        from rlhf_desktop import config

        try:
            gguf = Path(model).expanduser() if model else config.default_gguf_path()
        except config.ConfigError as exc:
            raise TuneConfigError(str(exc)) from exc
        if not gguf.is_file():
            raise TuneConfigError(f"model file {gguf} does not exist")
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return AutoTokenizer.from_pretrained(str(Path(model).expanduser()) if Path(
        model).expanduser().exists() else model)


def fit_report(data: str | Path, max_length: int, system_prompt: str = "",
               model: str = "") -> DataReport:
    """What a run with these settings would do with each pair of ``data`` (no training)."""
    tokenizer = load_tokenizer(model)
    records = read_pairs(data, system_prompt)
    _kept, report = select(records, tokenizer, max_length, str(data))
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m rlhf_desktop.tune.data --data FILE [--max-length N] [--system-prompt T]
    [--model M]``: the data report as one JSON object on stdout (exit 2 with the message on
    stderr for input the user must fix)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m rlhf_desktop.tune.data")
    parser.add_argument("--data", required=True)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--system-prompt", default="")
    parser.add_argument("--model", default="")
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    if args.nice:
        import os

        os.nice(args.nice)
    try:
        report = fit_report(args.data, args.max_length, args.system_prompt, args.model)
    except TuneConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps({**report.to_dict(), "summary": report.summary()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
