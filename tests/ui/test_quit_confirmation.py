"""The quit question: asked only while a reply is really being generated, worded by what is.

A real Azure-protocol server on a loopback socket streams the replies; the reward model's
scoring is held back by a real job in the rank worker (its one thread), so the window is
closed while finished replies wait to be scored.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from PySide6.QtWidgets import QMessageBox

from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.main_window import MainWindow
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import make_window, send

KEY = "sk-azure-SECRET-quitq-8d2e11b0"
PROMPT = "Tell me a long story about the sea"


def _azure(monkeypatch: pytest.MonkeyPatch, delay: float) -> AzureServer:
    server = AzureServer(api_key=KEY, deployment="gpt-test", reply_length=12,
                         chunk_delay_s=delay)
    server.ignore_n = True  # reply 1 streams alone, then reply 2 in its own request
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    return server


def _window(qtbot: object) -> MainWindow:
    window = make_window(candidates_per_turn=2, max_retries=0, max_tokens=64)
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    return window


def _all_finished(window: MainWindow) -> bool:
    widget = window.chat.widgets[-1]
    return all(card.candidate is not None for card in widget.cards.values())


@pytest.mark.timeout(90)
def test_closing_while_the_reward_model_scores_finished_replies_does_not_ask(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    with _azure(monkeypatch, 0.01):
        window = _window(qtbot)

        async def scenario() -> None:
            await window.backend.rebuild_provider()
            chat = window.backend.session.chat
            assert chat is not None
            busy = asyncio.get_running_loop().run_in_executor(chat.executor, release.wait, 60)
            await send(window, PROMPT)
            await wait_until(lambda: _all_finished(window), 30, "both replies to finish")
            assert window.chat.generating, "the turn should still be waiting to be scored"
            window.close()  # the ✕ of the title bar
            assert window.quit_confirm is None, (
                "asked about streaming replies while every reply had finished")
            release.set()
            await asyncio.wait_for(window.wait_closed(), 30)
            await busy

        try:
            run(loop, scenario())
        finally:
            release.set()
    repo = Repository.open()
    try:
        turns = repo.conversations.list_turns(repo.conversations.list_all()[0].id)
        assert [c.finish_reason for c in turns[0].candidates] == ["stop", "stop"]
    finally:
        repo.close()


@pytest.mark.timeout(90)
def test_the_question_names_the_reply_in_progress_and_follows_it_to_the_end(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with _azure(monkeypatch, 0.08):
        window = _window(qtbot)

        async def scenario() -> None:
            await window.backend.rebuild_provider()
            widget = await send(window, PROMPT)
            await wait_until(lambda: widget.cards[0].candidate is not None, 30,
                             "reply 1 to finish")
            await wait_until(lambda: bool(widget.cards[1].text.strip()), 30,
                             "reply 2 to stream")
            window.close()
            box = window.quit_confirm
            assert isinstance(box, QMessageBox), "quitting mid-reply did not ask"
            assert box.windowTitle() == "Quit while a reply is being generated?"
            assert box.text() == "Reply 2 is still being generated. Quit anyway?"
            # The user leaves the question open; the reply finishes behind it.
            await wait_until(lambda: not window.chat.generating, 30, "the turn to finish")
            await wait_until(lambda: "finished" in box.text(), 5, "the question to follow")
            assert "streaming" not in box.text() + box.windowTitle()
            assert "being generated" not in box.text() + box.informativeText()
            assert box.windowTitle() == "Quit now?"
            window.quit_button.click()
            await asyncio.wait_for(window.wait_closed(), 30)

        run(loop, scenario())
