"""Retries: the ``openai`` client's own, plus the few cases where this app differs.

The client retries 408/409/429/5xx, timeouts and connection errors ``max_retries`` times
with jittered exponential backoff, honours ``retry-after-ms`` / ``retry-after``, and never
retries a stream that has started. The app differs in three cases:

* a 429 with code ``insufficient_quota`` is not retried (waiting does not add quota);
* a 429 asking for a wait over :data:`MAX_WAIT_S` is not retried: the turn fails at once
  and tells the user how long to wait, instead of a silent spinner;
* a stream that fails before its first token (an SSE ``error`` event or a dropped
  connection right after the headers) is sent again (:func:`retry_unstarted`).

The first two are told to the client through its ``x-should-retry`` response header, set
by a response hook on the HTTP client (:func:`http_client`).
"""

from __future__ import annotations

import json
from typing import Any

from rlhf_desktop.providers._turn import Request
from rlhf_desktop.providers.openai_errors import parse_retry_after

MAX_WAIT_S = 30.0
"""The longest Retry-After the app waits out; a longer one fails the turn at once."""


def final_429(status: int, headers: Any, body: bytes) -> bool:
    """True for a 429 that must not be retried (no quota, or a wait over MAX_WAIT_S)."""
    if status != 429:
        return False
    wait = parse_retry_after(headers)
    if wait is not None and wait > MAX_WAIT_S:
        return True
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and error.get("code") == "insufficient_quota"


async def _mark_final(response: Any) -> None:
    """Response hook: ``x-should-retry: false`` on a 429 the app does not retry."""
    if response.status_code != 429:
        return
    body = await response.aread()
    if final_429(response.status_code, response.headers, body):
        response.headers["x-should-retry"] = "false"


def http_client(timeout: Any) -> Any:
    """The ``openai`` client's default async HTTP client, with the hook above."""
    import openai

    return openai.DefaultAsyncHttpxClient(timeout=timeout,
                                          event_hooks={"response": [_mark_final]})


def retry_unstarted(exc: BaseException, request: Request) -> bool:
    """True when a stream that had opened failed before any text arrived.

    The client never retries a stream once it has started, so an error event or a dropped
    connection before the first token would otherwise fail a reply nobody has seen.
    """
    import openai

    return (request.opened and not request.got_text and isinstance(exc, openai.APIError)
            and not isinstance(exc, openai.APIStatusError))
