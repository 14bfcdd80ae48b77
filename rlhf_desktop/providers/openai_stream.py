"""Reading one chat-completions request: streamed chunks or one response.

The readers only record: text becomes ``Delta`` events at once (through the tracker), and
how the server ended each choice, and the usage it reported, go into the
:class:`~rlhf_desktop.providers._turn.Request`. What each ending means is decided in one
place, :meth:`~rlhf_desktop.providers._turn.TurnRequests.on_end`, when the request is over.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from rlhf_desktop.domain import SamplingParams
from rlhf_desktop.providers._turn import OK_FINISH, ChoiceEnd, Request, Usage
from rlhf_desktop.providers.base import CandidateTracker
from rlhf_desktop.providers.openai_errors import content_filter_categories, redact_secret


@dataclass(frozen=True)
class Wire:
    """What every request of one turn shares: the client, what to send, where results go."""

    client: Any
    """The ``openai`` async client."""
    messages: list[dict[str, str]]
    params: SamplingParams
    tracker: CandidateTracker
    queue: asyncio.Queue[object]
    label: str
    """The endpoint's name in messages, e.g. ``Azure OpenAI``."""
    secret: str | None
    """Redacted from any text the server sends back."""


async def read_stream(wire: Wire, request: Request, kwargs: dict[str, Any]) -> None:
    """One streamed attempt.

    Usage may come in a chunk of its own after the last choice (OpenAI, Azure) or together
    with a finish reason (some proxies); either way it is kept for the whole request.
    """
    stream = await wire.client.chat.completions.create(stream=True, **kwargs)
    request.opened = True
    async for chunk in stream:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            request.usage = Usage.of(usage)
        for choice in chunk.choices or []:
            index = _note_choice(request, choice.index)
            if index is None:
                continue
            delta = getattr(choice, "delta", None)
            text = getattr(delta, "content", None) if delta is not None else None
            event = wire.tracker.add(index, text) if text else None
            if event is not None:
                wire.queue.put_nowait(event)
                request.got_text = True
            if choice.finish_reason:
                request.ended[index] = choice_end(wire, choice)


async def complete_once(wire: Wire, request: Request, kwargs: dict[str, Any]) -> None:
    """One non-streamed attempt: each choice becomes one ``Delta`` and its recorded end."""
    response = await wire.client.chat.completions.create(stream=False, **kwargs)
    if response.usage is not None:
        request.usage = Usage.of(response.usage)
    for choice in response.choices or []:
        index = _note_choice(request, choice.index)
        if index is None:
            continue
        event = wire.tracker.add(index, choice.message.content or "")
        if event is not None:
            wire.queue.put_nowait(event)
            request.got_text = True
        request.ended[index] = choice_end(wire, choice)


def _note_choice(request: Request, pos: Any) -> int | None:
    """The candidate index of server choice ``pos`` (None: not one asked for, or ended)."""
    if not isinstance(pos, int) or not 0 <= pos < len(request.indices):
        return None
    request.seen.add(pos)
    index = request.indices[pos]
    return None if index in request.ended else index


def choice_end(wire: Wire, choice: Any) -> ChoiceEnd:
    """The server's finish reason; a filtered or failed choice gets an ``error`` for the card."""
    reason = str(choice.finish_reason or "stop")
    extra = getattr(choice, "model_extra", None) or {}
    error: str | None = None
    if reason == "content_filter":
        cats = content_filter_categories(extra.get("content_filter_results"))
        why = f" (flagged: {', '.join(cats)})" if cats else ""
        error = (f"{wire.label}'s content filter stopped this reply{why}; the text before it "
                 "is kept.")
    elif reason not in OK_FINISH:
        detail = extra.get("error")
        message = detail.get("message") if isinstance(detail, dict) else None
        error = f"{wire.label} ended this reply with an error ({reason})"
        if isinstance(message, str) and message:
            error += f": {redact_secret(message, wire.secret)[:300]}"
    return ChoiceEnd(reason, error, wire.tracker.elapsed())
