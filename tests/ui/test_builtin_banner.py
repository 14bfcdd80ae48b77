"""The banner over a chat with the built-in model says which version the chat runs on: after
a switch to a tuned version it must not still say "the built-in offline model" (a new user
read that as the switch not having taken)."""

from __future__ import annotations

from rlhf_desktop.ui.main_window import builtin_banner


def test_the_banner_names_the_base_model() -> None:
    text = builtin_banner(0)
    assert "the built-in offline model (SmolLM2-135M)" in text
    assert "tuned" not in text


def test_the_banner_names_the_tuned_version_the_chat_runs_on() -> None:
    text = builtin_banner(3)
    assert "chat model v3 (tuned) of the built-in offline model" in text
    assert "tuned on your picks" in text
