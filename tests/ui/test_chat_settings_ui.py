"""Chat settings from the window: the dialog lists the server's models (a real loopback
server's ``GET /v1/models``), saves the chat's system prompt and model, the header and the
chat list's tooltip show them; a failed list says why inline and keeps what was typed. The
token count shows under the message box once a message is long."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.services.chat.conversations import ChatSettings
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import make_window, send

KEY = "sk-openai-chat-settings-ui-93ad"


@pytest.mark.timeout(90)
def test_chat_settings_dialog_lists_models_and_saves_them(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(api_key=KEY, model="gpt-test-model", reply_length=4) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_MODEL", "gpt-test-model")
        window = make_window(candidates_per_turn=2, max_retries=0, system_prompt="Be kind.")
        qtbot.addWidget(window)  # type: ignore[attr-defined]

        async def scenario() -> None:
            await window.backend.rebuild_provider()
            await send(window, "Hello")
            await wait_until(lambda: not window.chat.generating, 30, "the first turn")
            cid = window.chat.conversation_id
            assert cid is not None
            assert "Be kind." in window.chat_summary.text()
            dialog = window.open_chat_settings()
            await wait_until(lambda: dialog.refresh_button.isEnabled(), 30, "the model list")
            names = [dialog.model.itemText(i) for i in range(dialog.model.count())]
            assert names == ["Provider default (gpt-test-model)", "gpt-test-model"]
            dialog.prompt.setPlainText("Answer like a pirate.")
            dialog.model.setCurrentIndex(1)
            dialog.accept()
            chat = window.backend.session.conversations.chat_settings(cid)
            assert chat == ChatSettings("Answer like a pirate.", "gpt-test-model")
            assert "Answer like a pirate." in window.chat_summary.text()
            item = window.sidebar.list.item(0)
            assert "gpt-test-model" in item.toolTip() and "pirate" in item.toolTip()
            # The next turn sends the chat's system prompt.
            await send(window, "And now?")
            await wait_until(lambda: not window.chat.generating, 30, "the second turn")
            last = server.requests[-1].body or {}
            assert last["messages"][0] == {"role": "system",
                                           "content": "Answer like a pirate."}

            # A list that fails says why in the dialog; what was typed stays.
            server.stop()
            again = window.open_chat_settings()
            again.prompt.setPlainText("Keep this text")
            await wait_until(lambda: again.refresh_button.isEnabled(), 30, "the failure")
            assert again.models_note.text().startswith("⚠ Could not list the models")
            assert again.prompt.toPlainText() == "Keep this text"
            again.reject()

        run(loop, scenario())


@pytest.mark.timeout(60)
def test_a_long_message_shows_its_token_count(loop: asyncio.AbstractEventLoop,
                                              qtbot: object) -> None:
    window = make_window()
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    bar = window.chat.bar

    async def scenario() -> None:
        window.chat.composer.setPlainText("short")
        await asyncio.sleep(0.4)
        assert bar.token_label.isHidden()
        window.chat.composer.setPlainText("y" * 30_000)
        await wait_until(lambda: bar.token_label.isVisible(), 10, "the token count")
        assert bar.token_label.text().startswith("about 7,5")
        assert "tokens" in bar.token_label.text()
        assert window.chat.composer.toPlainText() == "y" * 30_000  # nothing was taken away

    run(loop, scenario())


@pytest.mark.timeout(60)
def test_the_count_warns_when_the_context_leaves_the_replies_less_than_max_tokens(
        qtbot: object) -> None:
    """2,026 of 2,048 tokens fits, but leaves the replies 22 tokens where max tokens is 256:
    the replies would stop when the context fills, so the count says so before sending."""
    from rlhf_desktop.services.chat.token_count import TokenCount
    from rlhf_desktop.ui.chat.composer import Composer, ComposerBar

    composer = Composer()
    bar = ComposerBar(composer, [])
    qtbot.addWidget(bar)  # type: ignore[attr-defined]
    composer.setPlainText("Any quick stretch for a stiff neck?")
    bar.set_counter(lambda _text: TokenCount(2026, 2048, True, "the tokenizer", 256, True))
    said = bar.token_label.text()
    assert said.startswith("⚠ 2,026 of 2,048 tokens — 22 left for the replies (max tokens 256)")
    assert said.endswith("start a new chat or raise the context size")
    # a remote model's context is not ours to raise; under half the context still warns
    bar.set_counter(lambda _text: TokenCount(600, 2048, True, "tiktoken", 1500))
    assert bar.token_label.isVisibleTo(bar) and bar.token_label.text().endswith(
        "they will be cut short or fail; start a new chat")
    bar.set_counter(lambda _text: TokenCount(1500, 2048, True, "the tokenizer", 256))
    assert bar.token_label.text() == "1,500 of 2,048 tokens"  # room enough: no warning
    assert not TokenCount(1500, 2048, True, "", 0).squeezed  # max tokens not said
    assert not TokenCount(2100, 2048, True, "", 256).squeezed  # over: the other warning
