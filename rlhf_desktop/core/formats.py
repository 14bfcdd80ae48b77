"""Preference-dataset formats: parse any supported line, render every export format.

Import recognises, per line:
- the project's own export (``prompt_messages`` plus ``chosen``/``rejected`` strings);
- TRL standard: ``prompt``/``chosen``/``rejected`` strings, where the prompt may be an
  HH-style ``Human: … Assistant: …`` transcript (parsed into turns);
- TRL conversational: ``prompt``/``chosen``/``rejected`` lists of messages, and TRL's
  implicit-prompt form (``chosen``/``rejected`` full conversations, no ``prompt``);
- original HH-RLHF: ``chosen``/``rejected`` full transcripts sharing a prefix;
- OpenAI/Azure OpenAI preference (DPO) fine-tuning lines: ``input.messages`` plus
  ``preferred_output``/``non_preferred_output`` (one assistant message each).

Export formats:
- ``trl-conversational`` (lists of messages; TRL applies the model's chat template): the one
  to use for chat data;
- ``trl`` (standard, plain text): every prompt is an HH-style transcript ending in the
  assistant cue (``\n\nHuman: …\n\nAssistant:``) and every reply starts with a space, so
  single- and multi-turn prompts look alike and prompt and reply never run together;
- ``openai-dpo``: the JSONL that ``client.fine_tuning.jobs.create(method={"type": "dpo"})``
  trains on (checked against the openai SDK's types by
  :func:`rlhf_desktop.providers.openai_dpo.validate_openai_dpo`).

Pure: no I/O (parse_lines reads the lines it is given), no storage, no client library.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rlhf_desktop.core.pick_rules import same_reply
from rlhf_desktop.domain import Message, PreferencePair

EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "trl", "trl-conversational", "hh", "openai-dpo",
                                   "csv")
_CUE = "\n\nAssistant:"

_SPEAKER = re.compile(r"(?:^|\n\n)(Human|Assistant|System):[ ]?")
_ROLE_OF = {"Human": "user", "Assistant": "assistant", "System": "system"}
_SPEAKER_OF = {"user": "Human", "assistant": "Assistant", "system": "System"}


class FormatError(ValueError):
    """A line that is not a preference pair in any supported format (message says why)."""


# ------------------------------------------------------------------ HH transcripts


def parse_transcript(text: str) -> list[Message]:
    """``Human: … \\n\\nAssistant: …`` into messages; plain text becomes one user message."""
    matches = list(_SPEAKER.finditer(text))
    if not matches or text[: matches[0].start()].strip():
        return [Message("user", text.strip())]
    messages: list[Message] = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        content = text[match.end() : end].strip()
        messages.append(Message(_ROLE_OF[match.group(1)], content))
    # A transcript that ends with an empty "Assistant:" is a prompt waiting for the reply.
    if messages and messages[-1].role == "assistant" and not messages[-1].content:
        messages.pop()
    return messages


def render_transcript(messages: Iterable[Message], open_assistant: bool = False) -> str:
    """Messages as an HH-style transcript (``\\n\\nHuman: …``)."""
    text = "".join(f"\n\n{_SPEAKER_OF.get(m.role, 'Human')}: {m.content}" for m in messages)
    return text + ("\n\nAssistant:" if open_assistant else "")


def _common_prefix_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two HH transcripts into (shared prompt, chosen reply, rejected reply)."""
    i = 0
    limit = min(len(chosen), len(rejected))
    while i < limit and chosen[i] == rejected[i]:
        i += 1
    cut = chosen.rfind("\n\nAssistant:", 0, i + 1)
    if cut < 0:
        raise FormatError("the two transcripts share no prompt ending in 'Assistant:'")
    head = len("\n\nAssistant:")
    return chosen[:cut], chosen[cut + head :].strip(), rejected[cut + head :].strip()


# ------------------------------------------------------------------ parsing one record


def _messages(value: Any, what: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise FormatError(f"'{what}' must be a non-empty list of messages")
    out: list[Message] = []
    for item in value:
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise FormatError(f"'{what}' holds an item without 'role' and 'content'")
        if not isinstance(item["content"], str):
            raise FormatError(f"'{what}' holds a message whose content is not text")
        out.append(Message(str(item["role"]), item["content"]))
    return out


def _reply(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    messages = _messages(value, what)
    if messages[-1].role != "assistant":
        raise FormatError(f"'{what}' does not end with an assistant message")
    return messages[-1].content


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise FormatError(f"'{key}' must be a string")
    return value


def parse_record(record: Any) -> PreferencePair:
    """One JSON object in any supported format → a pair (source ``import``)."""
    if not isinstance(record, dict):
        raise FormatError("a line must hold a JSON object")
    if "preferred_output" in record or "non_preferred_output" in record:
        record = _from_openai_dpo(record)
    if "chosen" not in record or "rejected" not in record:
        raise FormatError("needs 'chosen' and 'rejected'")
    reason = record.get("reason") if isinstance(record.get("reason"), str) else None
    if "prompt_messages" in record:  # the project's own export
        prompt = _messages(record["prompt_messages"], "prompt_messages")
        chosen, rejected = _text(record, "chosen"), _text(record, "rejected")
    elif isinstance(record.get("prompt"), list):  # TRL conversational
        prompt = _messages(record["prompt"], "prompt")
        chosen = _reply(record["chosen"], "chosen")
        rejected = _reply(record["rejected"], "rejected")
    elif isinstance(record.get("prompt"), str):  # TRL standard, maybe an HH transcript
        prompt = parse_transcript(record["prompt"])
        chosen, rejected = _text(record, "chosen"), _text(record, "rejected")
        if record["prompt"].rstrip(" ").endswith(_CUE):  # "Assistant:" + " reply"
            chosen, rejected = chosen.removeprefix(" "), rejected.removeprefix(" ")
    elif isinstance(record["chosen"], list):  # TRL implicit prompt: full conversations
        full_c = _messages(record["chosen"], "chosen")
        full_r = _messages(record["rejected"], "rejected")
        if full_c[:-1] != full_r[:-1]:
            raise FormatError("'chosen' and 'rejected' conversations differ before the reply")
        prompt, chosen, rejected = full_c[:-1], full_c[-1].content, full_r[-1].content
    elif isinstance(record["chosen"], str):  # original HH-RLHF
        head, chosen, rejected = _common_prefix_hh(_text(record, "chosen"),
                                                   _text(record, "rejected"))
        prompt = parse_transcript(head)
    else:
        raise FormatError("'chosen' must be a string or a list of messages")
    if not any(m.role == "user" and m.content.strip() for m in prompt):
        raise FormatError("the prompt has no user message")
    if not chosen.strip() or not rejected.strip():
        raise FormatError("'chosen' and 'rejected' must not be empty")
    if same_reply(chosen, rejected):
        raise FormatError("'chosen' and 'rejected' are the same reply (a tie, not a "
                          "preference)")
    return PreferencePair(prompt=tuple(prompt), chosen=chosen, rejected=rejected,
                          reason=reason, source="import", weight=_weight(record))


def _weight(record: dict[str, Any]) -> float:
    """A line's training weight: ``weight`` (the project's jsonl) or ``metadata.weight``
    (hh, a ranking's pairs); 1 when it has none."""
    meta = record.get("metadata")
    value = record.get("weight", meta.get("weight") if isinstance(meta, dict) else None)
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value < float("inf"):
        raise FormatError("'weight' must be a positive number (1 for an ordinary pair)")
    return float(value)


def _from_openai_dpo(record: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI DPO line as a TRL conversational record (then parsed as one)."""
    source = record.get("input")
    if not isinstance(source, dict) or "messages" not in source:
        raise FormatError("'input' must be an object with 'messages'")
    out: dict[str, Any] = {"prompt": source["messages"]}
    for theirs, ours in (("preferred_output", "chosen"), ("non_preferred_output", "rejected")):
        value = record.get(theirs)
        if not isinstance(value, list) or len(value) != 1:
            raise FormatError(f"'{theirs}' must be a list of one assistant message")
        out[ours] = value
    return out


@dataclass
class LineError:
    """A line that could not be imported."""

    line: int
    message: str


@dataclass
class ParsedFile:
    """Everything read from an import file."""

    pairs: list[PreferencePair]
    errors: list[LineError]
    lines: int


def parse_lines(raw_lines: Iterable[bytes], max_line_bytes: int = 0) -> ParsedFile:
    """Parse JSONL bytes; every bad line is reported with its 1-based number."""
    pairs: list[PreferencePair] = []
    errors: list[LineError] = []
    count = 0
    for number, raw in enumerate(raw_lines, start=1):
        count = number
        if max_line_bytes and len(raw) > max_line_bytes:
            size = len(raw) / (1024 * 1024)
            errors.append(LineError(number, f"line of {size:.0f} MB is over the "
                                            f"{max_line_bytes // (1024 * 1024)} MB limit"))
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            errors.append(LineError(number, f"not UTF-8 text (byte {exc.start}); save as UTF-8"))
            continue
        if not text.strip():
            continue
        text = text.rstrip("\r\n")  # a column past the newline would point at nothing
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            where = ("at the end of the line (is a closing } or \" missing?)"
                     if exc.pos >= len(text.rstrip()) else f"at column {exc.colno}")
            said = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
            errors.append(LineError(number, f"not valid JSON: {said} {where}"))
            continue
        try:
            pairs.append(parse_record(record))
        except FormatError as exc:
            errors.append(LineError(number, str(exc)))
    return ParsedFile(pairs=pairs, errors=errors, lines=count)


# ------------------------------------------------------------------ export


def export_record(pair: PreferencePair, fmt: str) -> dict[str, Any]:
    """One pair as a JSON object of format ``fmt`` (all but csv)."""
    prompt = list(pair.prompt)
    if fmt == "jsonl":
        return {
            "prompt": pair.prompt_text,
            "prompt_messages": [m.to_dict() for m in prompt],
            "chosen": pair.chosen,
            "rejected": pair.rejected,
            "reason": pair.reason,
            "source": pair.source,
            "created_at": pair.created_at,
            "weight": pair.weight,
            **_metadata(pair),
        }
    if fmt == "trl":
        return {"prompt": render_transcript(prompt, open_assistant=True),
                "chosen": " " + pair.chosen, "rejected": " " + pair.rejected}
    if fmt == "trl-conversational":
        return {
            "prompt": [m.to_dict() for m in prompt],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
    if fmt == "openai-dpo":
        return {
            "input": {"messages": [m.to_dict() for m in prompt]},
            "preferred_output": [{"role": "assistant", "content": pair.chosen}],
            "non_preferred_output": [{"role": "assistant", "content": pair.rejected}],
        }
    if fmt == "hh":
        head = render_transcript(prompt)
        return {
            "chosen": f"{head}\n\nAssistant: {pair.chosen}",
            "rejected": f"{head}\n\nAssistant: {pair.rejected}",
            **_metadata(pair),
        }
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")


def _metadata(pair: PreferencePair) -> dict[str, Any]:
    """``{"metadata": provenance}`` for the formats that carry it (jsonl, hh, csv), when the
    pair was read with its provenance; TRL and OpenAI lines never carry it (their readers'
    column contracts)."""
    return {} if pair.metadata is None else {"metadata": pair.metadata}


CSV_COLUMNS = ("prompt", "chosen", "rejected", "reason", "source", "created_at", "metadata")


def csv_row(pair: PreferencePair) -> list[Any]:
    """A pair as the csv format's row (in :data:`CSV_COLUMNS` order; metadata as JSON)."""
    return [pair.prompt_text, pair.chosen, pair.rejected, pair.reason or "", pair.source,
            pair.created_at or "", "" if pair.metadata is None else json.dumps(pair.metadata)]


def csv_lines(rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The csv file, line by line: the header (:data:`CSV_COLUMNS`), then ``rows``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        yield buffer.getvalue()


def export_lines(pairs: Iterable[PreferencePair], fmt: str) -> Iterator[str]:
    """The export file, line by line (with newlines)."""
    if fmt == "csv":
        yield from csv_lines(csv_row(pair) for pair in pairs)
        return
    for pair in pairs:
        yield json.dumps(export_record(pair, fmt), ensure_ascii=False) + "\n"


def import_key(pair: PreferencePair) -> tuple[tuple[tuple[str, str], ...], str, str]:
    """Identity of a pair for de-duplication on import: the whole prompt, then the chosen
    and the rejected reply in that order. Not the reward model's
    :func:`~rlhf_desktop.reward.model.pair_key` (last prompt, either order, hashed), which
    says whether a ranker was trained on a comparison."""
    return (tuple((m.role, m.content) for m in pair.prompt), pair.chosen, pair.rejected)


