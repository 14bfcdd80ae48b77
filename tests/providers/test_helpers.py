"""Small helpers: messages, retry policy, Retry-After parsing, candidate tracking."""

from __future__ import annotations

import email.utils
import time

from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers import Delta, Done, ProviderError, RateLimitError, build_messages
from rlhf_desktop.providers.base import CandidateTracker
from rlhf_desktop.providers.openai_errors import parse_retry_after, redact_secret


def test_system_prompt_is_prepended_once() -> None:
    msgs = [Message("user", "hi")]
    assert build_messages(msgs, SamplingParams(system_prompt="")) == [
        {"role": "user", "content": "hi"}]
    with_system = build_messages(msgs, SamplingParams(system_prompt="Be kind."))
    assert with_system[0] == {"role": "system", "content": "Be kind."}
    again = [Message("system", "Be kind."), *msgs]
    assert build_messages(again, SamplingParams(system_prompt="Be kind.")) == with_system


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = parse_retry_after({"retry-after": later})
    assert wait is not None and 25 <= wait <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_tracker_times_and_snapshots() -> None:
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0]).__next__
    tracker = CandidateTracker(2, clock=clock)
    assert tracker.add(0, "Hel") == Delta(0, "Hel")
    assert tracker.add(0, "") is None
    tracker.add(0, "lo")
    done = tracker.finish(0, "stop", completion_tokens=2)
    assert isinstance(done, Done) and done.candidate.text == "Hello"
    assert done.candidate.ttft_s == 1.0 and done.candidate.latency_s == 2.0
    assert tracker.finish(0, "stop") is None and tracker.add(0, "x") is None
    tracker.add(1, "part")
    snap = tracker.snapshot()
    assert [c.text for c in snap] == ["Hello", "part"] and snap[1].finish_reason is None
    assert tracker.unfinished() == [1]


def test_errors_are_plain_and_carry_partials() -> None:
    err = RateLimitError("Wait 3 s", retry_after=3.0, provider="azure", status_code=429)
    assert str(err) == "Wait 3 s" and repr(err) == "RateLimitError('Wait 3 s')"
    assert isinstance(err, ProviderError) and err.retryable and err.partial == []
    assert redact_secret("key sk-123456 here", "sk-123456") == "key *** here"


def test_which_429s_are_not_retried() -> None:
    """No quota, or a wait longer than the app waits out: fail at once (openai_retry)."""
    from rlhf_desktop.providers.openai_retry import final_429

    quota = b'{"error": {"code": "insufficient_quota", "message": "no quota"}}'
    busy = b'{"error": {"code": "429", "message": "Requests ... exceeded"}}'
    assert final_429(429, {}, quota)
    assert not final_429(429, {"retry-after": "2"}, busy)
    assert final_429(429, {"retry-after": "31"}, busy)
    assert not final_429(500, {"retry-after": "31"}, busy)
    assert not final_429(429, {}, b"not json")
