"""Reading one chat-completions request: streamed chunks or one response.

The readers only record: text becomes ``Delta`` events at once (through the tracker), and
how the server ended each choice, and the usage it reported, go into the
:class:`~rlhf_desktop.providers._turn.Request`. What each ending means is decided in one
place, :meth:`~rlhf_desktop.providers._turn.TurnRequests.on_end`, when the request is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from rlhf_desktop.providers._turn import OK_FINISH, ChoiceEnd, Request, Usage
from rlhf_desktop.providers.base import CandidateTracker
from rlhf_desktop.providers.openai_errors import content_filter_categories, redact_secret


async def read_stream(
    client: Any,
    request: Request,
    kwargs: dict[str, Any],
    tracker: CandidateTracker,
    queue: asyncio.Queue[object],
    *,
    label: str,
    secret: str | None,
) -> AsyncIterator[bool]:
    """One streamed attempt; yields True each time text arrived (for the retry rule).

    Usage may come in a chunk of its own after the last choice (OpenAI, Azure) or together
    with a finish reason (some proxies); either way it is kept for the whole request.
    """
    stream = await client.chat.completions.create(stream=True, **kwargs)
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
            event = tracker.add(index, text) if text else None
            if event is not None:
                queue.put_nowait(event)
                yield True
            if choice.finish_reason:
                request.ended[index] = choice_end(choice, tracker.elapsed(), label=label,
                                                  secret=secret)


async def complete_once(
    client: Any,
    request: Request,
    kwargs: dict[str, Any],
    tracker: CandidateTracker,
    queue: asyncio.Queue[object],
    *,
    label: str,
    secret: str | None,
) -> None:
    """One non-streamed attempt: each choice becomes one ``Delta`` and its recorded end."""
    response = await client.chat.completions.create(stream=False, **kwargs)
    if response.usage is not None:
        request.usage = Usage.of(response.usage)
    for choice in response.choices or []:
        index = _note_choice(request, choice.index)
        if index is None:
            continue
        event = tracker.add(index, choice.message.content or "")
        if event is not None:
            queue.put_nowait(event)
        request.ended[index] = choice_end(choice, tracker.elapsed(), label=label, secret=secret)


def _note_choice(request: Request, pos: Any) -> int | None:
    """The candidate index of server choice ``pos`` (None: not one asked for, or ended)."""
    if not isinstance(pos, int) or not 0 <= pos < len(request.indices):
        return None
    request.seen.add(pos)
    index = request.indices[pos]
    return None if index in request.ended else index


def choice_end(choice: Any, latency_s: float, *, label: str, secret: str | None) -> ChoiceEnd:
    """The server's finish reason; a filtered or failed choice gets an ``error`` for the card."""
    reason = str(choice.finish_reason or "stop")
    extra = getattr(choice, "model_extra", None) or {}
    error: str | None = None
    if reason == "content_filter":
        cats = content_filter_categories(extra.get("content_filter_results"))
        why = f" (flagged: {', '.join(cats)})" if cats else ""
        error = f"{label}'s content filter stopped this reply{why}; the text before it is kept."
    elif reason not in OK_FINISH:
        detail = extra.get("error")
        message = detail.get("message") if isinstance(detail, dict) else None
        error = f"{label} ended this reply with an error ({reason})"
        if isinstance(message, str) and message:
            error += f": {redact_secret(message, secret)[:300]}"
    return ChoiceEnd(reason, error, latency_s)
