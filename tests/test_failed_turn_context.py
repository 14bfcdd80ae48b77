"""A turn whose every reply failed is not sent again as context.

The case, on Azure (LiteLLM + llama.cpp, n_ctx 2048): a 30,000-character
paste failed with "Your message and the conversation are about 6,800 tokens; this model
takes 2,048. Shorten the message or start a new chat." The next, short message in the same
chat failed with the same error, and so did every later one: the failed turn's message was
still sent as part of the conversation, although the model never answered it.
"""

from __future__ import annotations

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.services.chat.service import history


def _turn(messages: list[Message], candidates: list[Candidate],
          label_kind: str | None = None) -> Turn:
    return Turn(conversation_id=1, messages=messages, provider="azure", model="m",
                params=SamplingParams(n=len(candidates)), candidates=candidates,
                label_kind=label_kind)


def _failed(n: int) -> list[Candidate]:
    return [Candidate(index=i, error="too long for the model's context") for i in range(n)]


def test_a_turn_whose_every_reply_failed_is_not_sent_again() -> None:
    first = _turn([Message("user", "hi")],
                  [Candidate(index=0, text="Hello!", finish_reason="stop")])
    huge = "x " * 15_000
    failed = _turn([Message("user", "hi"), Message("assistant", "Hello!"),
                    Message("user", huge)], _failed(3))
    assert [m.content for m in history([first, failed])] == ["hi", "Hello!"]


def test_failed_turns_in_a_row_are_all_left_out() -> None:
    first = _turn([Message("user", "hi")],
                  [Candidate(index=0, text="Hello!", finish_reason="stop")])
    failed = _turn([Message("user", "hi"), Message("assistant", "Hello!"),
                    Message("user", "long")], _failed(2))
    failed_again = _turn([Message("user", "hi"), Message("assistant", "Hello!"),
                          Message("user", "short")], _failed(2))
    assert [m.content for m in history([first, failed, failed_again])] == ["hi", "Hello!"]
    assert history([failed]) == []


def test_a_turn_with_one_whole_reply_or_all_bad_keeps_its_message() -> None:
    mixed = _turn([Message("user", "q")],
                  [Candidate(index=0, error="server error"),
                   Candidate(index=1, text="an answer", finish_reason="stop")])
    assert [m.content for m in history([mixed])] == ["q", "an answer"]
    bad = _turn([Message("user", "q")],
                [Candidate(index=0, text="bad", finish_reason="stop")], label_kind="all_bad")
    assert [m.content for m in history([bad])] == ["q"]
