"""A turn answered by a tuned version of the built-in model says so above its replies, from
the model name the turn saved: after the chat switches back to the base, the earlier turns
still tell which model wrote them (a new user could not compare them afterwards)."""

from __future__ import annotations

import pytest

from rlhf_desktop.core.chat_models import local_model_name, tuned_version
from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.markdown_render import MarkdownRenderer

STEM = "SmolLM2-135M-Instruct.Q4_1"


def test_the_model_name_carries_the_tuned_version_both_ways() -> None:
    assert local_model_name(STEM, 0) == STEM
    assert local_model_name(STEM, 2) == f"{STEM}+v0002"
    assert local_model_name(f"{STEM}+v0002", 3) == f"{STEM}+v0003"  # replaced, not stacked
    assert tuned_version(local_model_name(STEM, 12)) == 12
    assert tuned_version(STEM) == 0 and tuned_version("gpt-4o+v2-preview") == 0


def shown_status(qtbot: object, provider: str, model: str) -> str:
    turn = Turn(conversation_id=1, messages=[Message("user", "Name a colour")],
                provider=provider, model=model, params=SamplingParams(n=2), id=3,
                candidates=[Candidate(index=i, text=f"reply {i}", id=10 + i,
                                      finish_reason="stop") for i in range(2)])
    widget = TurnWidget("Name a colour", 2, MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.set_turn(turn)
    return widget.status.text()


@pytest.mark.parametrize(("provider", "model", "marked"), [
    ("local", f"{STEM}+v0002", True),
    ("local", STEM, False),
    ("azure", "my+v0002", False),  # only the built-in model's names carry a version
])
def test_a_turn_from_a_tuned_version_says_so(qtbot: object, provider: str, model: str,
                                             marked: bool) -> None:
    text = shown_status(qtbot, provider, model)
    assert text.startswith("From chat model v2 (tuned) · ") is marked, text
    assert "pick the best" in text
