"""Property-based, time-bounded fuzzing of the importers: any input is a pair or a clear
error for its line — never a crash, never a silent drop."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf_desktop.core.formats import FormatError, parse_lines, parse_record

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["prompt", "chosen", "rejected", "role", "content",
                                       "prompt_messages", "reason", "x"]), children, max_size=5),
    max_leaves=20,
)


@FAST
@given(json_values)
def test_any_json_value_parses_or_raises_format_error(value):
    try:
        pair = parse_record(value)
    except FormatError as exc:
        assert str(exc)
    else:
        assert pair.chosen.strip() and pair.rejected.strip()
        assert any(m.role == "user" for m in pair.prompt)


@FAST
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_any_bytes_are_accounted_for_line_by_line(lines):
    raw = [line.replace(b"\n", b" ") + b"\n" for line in lines]
    parsed = parse_lines(raw)
    non_blank = sum(1 for line in raw if not _blank_text(line))
    assert len(parsed.pairs) + len(parsed.errors) == non_blank
    assert all(1 <= e.line <= len(raw) for e in parsed.errors)


def _blank_text(line: bytes) -> bool:
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


@FAST
@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_trl_standard_round_trips_any_text(prompt, chosen, rejected):
    record = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    try:
        pair = parse_record(json.loads(json.dumps(record)))
    except FormatError:
        return
    assert pair.chosen == chosen and pair.rejected == rejected
