"""Pairs from later turns of a chat are used for tuning, not dropped: the conversation is cut
from the left by whole turns (the system prompt and the last user message kept) until the
prompt and the longer reply fit ``max_length`` in the chat template's tokens; only a pair
whose system prompt and last message alone are too long is left out, and it is listed.
Real tokenizer and chat template of the built-in model (read from its GGUF file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rlhf_desktop.tune import data as tune_data
from tests.tune.conftest import needs_tune_stack

pytestmark = [pytest.mark.slow, pytest.mark.llama, pytest.mark.timeout(120)]

SYSTEM = "You are a helpful assistant."
PARAGRAPH = ("Tell me more about the history of the city, its rivers, its bridges, the old "
             "market square and the people who built the cathedral over three centuries. ")


def _chat(turns: int) -> list[dict[str, str]]:
    """A conversation of ``turns`` long user messages and replies, ending on a user turn."""
    messages = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"Turn {i}. " + PARAGRAPH * 2})
        messages.append({"role": "assistant", "content": f"Reply {i}. " + PARAGRAPH})
    messages.append({"role": "user", "content": "And the bridges, in one sentence?"})
    return messages


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    needs_tune_stack()
    return tune_data.load_tokenizer("")


def test_a_pair_from_a_later_turn_is_cut_from_the_left_and_used(tmp_path: Path,
                                                                 tokenizer: Any) -> None:
    rows = [
        {"prompt": [{"role": "user", "content": "Hi, a bridge fact?"}],
         "chosen": "The oldest bridge is stone.", "rejected": "No."},
        {"prompt": _chat(4), "chosen": "Seven bridges cross the two rivers.",
         "rejected": "I do not know."},
        {"prompt": [{"role": "user", "content": PARAGRAPH * 12}],
         "chosen": "Yes.", "rejected": "No."},
    ]
    records = tune_data.read_pairs(_write(tmp_path / "pairs.jsonl", rows), SYSTEM)
    full = tune_data.measure(records[1], tokenizer)
    assert full.prompt_tokens > 256  # as exported, the whole chat is over the limit
    kept, report = tune_data.select(records, tokenizer, 256, "pairs.jsonl")
    assert report.used == 2 and [r["line"] for r in kept] == [1, 2], report.summary()
    [cut] = report.context_cut
    assert cut.line == 2 and cut.turns_cut >= 1
    trimmed = kept[1]
    assert trimmed["prompt"][0] == {"role": "system", "content": SYSTEM}
    assert trimmed["prompt"][-1]["content"] == "And the bridges, in one sentence?"
    assert trimmed["prompt"][1]["role"] == "user"  # whole turns: starts on a user message
    length = tune_data.measure(trimmed, tokenizer)
    assert length.prompt_tokens + max(length.chosen_tokens, length.rejected_tokens) <= 256
    # as much recent context as fits: one more turn back would not fit
    system, rest = trimmed["prompt"][:1], records[1]["prompt"][1:]
    start = len(rest) - (len(trimmed["prompt"]) - 1)
    wider = {**records[1], "prompt": system + rest[start - 2:]}
    more = tune_data.measure(wider, tokenizer)
    assert more.prompt_tokens + max(more.chosen_tokens, more.rejected_tokens) > 256
    # the one left out is named with its reason
    assert [p.line for p in report.dropped_prompt_too_long] == [3]
    assert "system prompt and the last message alone are too long" in report.summary()


def test_the_report_command_counts_the_pairs_a_run_will_use(tmp_path: Path,
                                                            tokenizer: Any) -> None:
    rows = [{"prompt": _chat(n), "chosen": "Seven bridges.", "rejected": "No idea."}
            for n in (1, 2, 3)]
    path = _write(tmp_path / "pairs.jsonl", rows)
    proc = subprocess.run([sys.executable, "-m", "rlhf_desktop.tune.data", "--data", str(path),
                           "--max-length", "256", "--system-prompt", SYSTEM],
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pairs"] == 3 and report["used"] == 3, report["summary"]
    assert not report["dropped_prompt_too_long"]
    assert len(report["context_cut"]) >= 2
