"""An import file's line that is not JSON is named with what is wrong and where, in words
that read right (never "starting at at column")."""

from __future__ import annotations

from rlhf_desktop.core.formats import parse_lines


def test_an_unterminated_string_says_where_it_starts_once() -> None:
    parsed = parse_lines([b'{"prompt": "q", "chosen": "a, "rejected": "b"}',
                          b'{"prompt": "q", "chosen": "never closed'])
    messages = [e.message for e in parsed.errors]
    assert [e.line for e in parsed.errors] == [1, 2]
    assert messages[1] == "not valid JSON: Unterminated string starting at column 27"
    assert not [m for m in messages if " at at " in m], messages


def test_a_missing_comma_says_where() -> None:
    parsed = parse_lines([b'{"prompt": "q" "chosen": "a"}'])
    assert parsed.errors[0].message == "not valid JSON: Expecting ',' delimiter at column 16"
