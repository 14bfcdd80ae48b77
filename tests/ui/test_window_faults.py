"""Network faults through the window.

For every fault of the Azure-protocol test server (``tests/azure_server.py``): the prompt and
any partial replies stay visible, a non-modal message with Retry shows inside the turn (no
dialog), the window's event loop keeps ticking, and Retry runs the next turn to the end.
"""

from __future__ import annotations

import asyncio

import pytest
from PySide6.QtWidgets import QApplication

from rlhf_desktop import config
from tests.azure_protocol import FAULTS
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import db, make_window, send

KEY = "sk-azure-SECRET-faults-7d2e91c04b"
# Faults after some text has streamed: every card keeps what arrived.
MID_STREAM = {"truncate", "drop_mid", "sse_error"}
# Faults on one choice: the other cards finish, the failed one keeps its partial text.
ONE_CHOICE = {"choice_filter", "choice_error"}
# Not an error: a late answer (2 s), a server that ignores n, or a choice left without its
# finish reason (the app asks again).
NO_ERROR = {"slow", "ignore_n", "choice_unfinished"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_keeps_prompt_and_partials_shows_message_and_retry_works(
        fault: str, loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(api_key=KEY, deployment="gpt-test", reply_length=30,
                     chunk_delay_s=0.01) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        window = make_window(candidates_per_turn=3, max_retries=0, max_tokens=64)
        qtbot.addWidget(window)  # type: ignore[attr-defined]
        chat = window.chat
        prompt = f"Tell me about rivers ({fault})"

        async def scenario() -> None:
            await window.backend.rebuild_provider()  # no reward model needed here
            server.inject(fault, times=1, retry_after=1, delay=1.0, after=3)
            failed = await send(window, prompt)
            await wait_until(lambda: not chat.generating, 30, f"turn with {fault}")
            # The prompt is still shown.
            assert prompt in failed.prompt_view.toPlainText()
            texts = {i: card.text for i, card in failed.cards.items()}
            if fault in MID_STREAM:
                assert all(t.startswith("Reply") for t in texts.values()), texts
            if fault in ONE_CHOICE:
                assert sum(1 for t in texts.values() if t.startswith("Reply")) == 3, texts
            if fault in NO_ERROR:
                assert not failed.error_row.isVisible(), failed.error_label.text()
                assert all(c.candidate and c.candidate.text for c in failed.cards.values())
            else:
                # A message inside the turn, with Retry; never a modal dialog.
                assert failed.error_row.isVisible(), f"no message for {fault}"
                assert failed.error_label.text().strip()
                assert KEY not in failed.error_label.text()
                assert failed.retry_button.isVisible()
                assert QApplication.activeModalWidget() is None
                # Partial replies are also kept in the stored turn.
                if failed.turn is not None and failed.turn.id:
                    stored = db().conversations.get_turn(failed.turn.id)
                    assert [c.text for c in stored.candidates] == [
                        c.text for c in failed.turn.candidates]
            # The next turn works: Retry (or a new message when there was nothing to retry).
            # When only some replies failed, "Retry failed" asks again for those in place.
            in_place = False
            good = {i: card.text for i, card in failed.cards.items()
                    if card.candidate is not None and not card.candidate.error and card.text}
            if failed.retry_button.isVisible() and failed.error_row.isVisible():
                in_place = failed.retry_button.text() == "Retry failed"
                failed.retry_button.click()
                nxt = chat.widgets[-1]
                assert (nxt is failed) == in_place
            else:
                nxt = await send(window, "And lakes?")
            await wait_until(lambda: not chat.generating, 30, "the next turn")
            assert not nxt.error_row.isVisible(), nxt.error_label.text()
            assert all(c.candidate and c.candidate.text.startswith("Reply")
                       for c in nxt.cards.values())
            shown = failed if failed in chat.widgets else nxt
            assert prompt in shown.prompt_view.toPlainText()
            if in_place:  # the replies that had not failed are unchanged
                assert failed in chat.widgets
                assert good and all(failed.cards[i].text == t for i, t in good.items())
            elif nxt.messages == failed.messages:  # a retry replaced the failed turn on screen
                assert failed not in chat.widgets
            else:  # the failed turn is still on screen with its prompt and partial text
                assert failed in chat.widgets
                assert {i: c.text for i, c in failed.cards.items()} == texts

        try:
            run(loop, scenario(), timeout=45)
        finally:
            run(loop, window.shutdown())
        assert not (config.logs_dir() / "crash.log").exists()  # nothing went unhandled


@pytest.mark.timeout(60)
def test_retry_after_every_reply_failed_shows_the_message_once(
        loop: asyncio.AbstractEventLoop, qtbot: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry on a turn whose replies all failed: the retried replies take the failed turn's
    place on screen (the user's message shows once, also when the chat is opened again), the
    stored retry continues the failed turn, and its request carries the message once."""
    with AzureServer(api_key=KEY, deployment="gpt-test", reply_length=30,
                     chunk_delay_s=0.01) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        window = make_window(candidates_per_turn=3, max_retries=0, max_tokens=64)
        qtbot.addWidget(window)  # type: ignore[attr-defined]
        chat = window.chat
        prompt = "Tell me about deltas"

        async def scenario() -> None:
            await window.backend.rebuild_provider()
            server.inject("server_error", times=1)
            failed = await send(window, prompt)
            await wait_until(lambda: not chat.generating, 30, "the failing turn")
            assert failed.turn is not None and failed.turn.id
            assert failed.retry_button.isVisible() and failed.retry_button.text() == "Retry"
            server.requests.clear()
            failed.retry_button.click()
            retried = chat.widgets[-1]
            await wait_until(lambda: not chat.generating, 30, "the retry")
            assert all(c.candidate and c.candidate.text.startswith("Reply")
                       for c in retried.cards.values())
            assert chat.widgets == [retried], "the failed turn is still shown"
            shown = [w.prompt_view.toPlainText() for w in chat.widgets]
            assert sum(prompt in text for text in shown) == 1, shown
            assert retried.turn is not None and retried.turn.id
            parent = db().conn.execute("SELECT parent_turn_id FROM turns WHERE id = ?",
                                       (retried.turn.id,)).fetchone()[0]
            assert parent == failed.turn.id
            bodies = [r.body for r in server.requests if r.body and "messages" in r.body]
            assert bodies
            for body in bodies:
                users = [m for m in body["messages"] if m["role"] == "user"]
                assert [m["content"] for m in users] == [prompt], users
            # Opened again from the database: the message still shows once.
            chat.show_conversation(chat.conversation_id)
            await wait_until(lambda: bool(chat.widgets), 10, "the chat shown again")
            assert [w.turn.id for w in chat.widgets if w.turn] == [retried.turn.id]

        try:
            run(loop, scenario(), timeout=45)
        finally:
            run(loop, window.shutdown())
