"""What every command shares: one-line errors, plurals, printing text or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 line``, ``2 lines``: the count and the noun in the right number."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


class CliError(Exception):
    """A failure to report in one line on stderr (exit status 2)."""


def emit(data: dict[str, Any], as_json: bool, lines: Sequence[str]) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print("\n".join(lines))
