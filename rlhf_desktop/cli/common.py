"""What every command shares: one-line errors, plurals, printing text or JSON, and the
session a command that chats or changes the arena works through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlhf_desktop.config import Settings
    from rlhf_desktop.services.session import AppSession


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


@asynccontextmanager
async def app_session(settings: Settings | None = None) -> AsyncIterator[AppSession]:
    """The :class:`~rlhf_desktop.services.session.AppSession` of one command, as the window
    builds it (``settings``: the command's, default the saved ones), closed at the end: its
    provider, runner, tuning service and database. The command line has no chat stack of
    its own."""
    from rlhf_desktop.services.session import AppSession

    session = AppSession(settings)
    try:
        yield session
    finally:
        await session.aclose()
