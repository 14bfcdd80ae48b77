"""The chat turn through the real window, against the Azure-protocol test server (real
sockets) or the built-in model: digits typed into the message box are text (Alt+digit
picks), Ctrl+Z undoes typing and Alt+Z the pick, a prompt too long for the context is folded
or held back, the reason field is scrolled into view, all replies failed is said once, the
chat fits the minimum window size, and copy / stop one / regenerate one / retry only the
failed replies.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel, QWidget

from rlhf_desktop import config
from rlhf_desktop.storage.repo import StorageError
from rlhf_desktop.ui.chat.cards import MarkdownView
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.main_window import MainWindow
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import activate, azure_env, db, press, send, window_for

KEY = "sk-azure-SECRET-chat-turn-71c0"
ALT = Qt.KeyboardModifier.AltModifier
CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureServer]:
    """The Azure-protocol server, with the app's environment pointing at it."""
    with azure_env(monkeypatch, KEY) as srv:
        yield srv


def status(window: MainWindow) -> str:
    return window.statusBar().currentMessage()


def in_view(window: MainWindow, widget: QWidget) -> bool:
    """Whether ``widget`` is shown inside the chat's visible area (not scrolled away)."""
    if not widget.isVisible():
        return False
    viewport = window.chat.scroll_area.viewport()
    top = widget.mapTo(viewport, widget.rect().topLeft()).y()
    bottom = widget.mapTo(viewport, widget.rect().bottomLeft()).y()
    return top >= 0 and bottom <= viewport.height()


def shown_texts(root: QWidget) -> list[str]:
    """The texts of every visible label and message view under ``root``."""
    texts = [w.text() for w in root.findChildren(QLabel) if w.isVisible()]
    texts += [w.toPlainText() for w in root.findChildren(MarkdownView) if w.isVisible()]
    return texts


async def finished_turn(window: MainWindow, text: str) -> TurnWidget:
    widget = await send(window, text)
    await wait_until(lambda: not window.chat.generating, 60, "the turn")
    await asyncio.sleep(0.05)
    return widget


def test_a_message_may_start_with_a_digit(loop: asyncio.AbstractEventLoop, qtbot: object,
                                          server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=3, max_tokens=32)
    chat, repo = window.chat, db()

    async def flow() -> None:
        await window.start()
        await activate(window)
        first = await finished_turn(window, "Name a colour.")
        # The user types where the focus is after a finished turn: it must be text.
        focus = QApplication.focusWidget()
        assert focus is chat.composer
        QTest.keyClicks(focus, "3 ways to save money")
        assert chat.composer.toPlainText() == "3 ways to save money"
        assert repo.labels.count() == 0 and not first.reason_row.isVisible()
        QTest.keyClick(chat.composer, Qt.Key.Key_Return)
        assert chat.widgets[-1].messages[-1].content == "3 ways to save money"
        second = chat.widgets[-1]
        await wait_until(lambda: not chat.generating, 60, "the second turn")
        # Alt+2 picks from the message box; plain digits pick only on the turns.
        chat.composer.setFocus()
        QTest.keyClick(chat.composer, Qt.Key.Key_2, ALT)
        assert repo.labels.count() == 1 and chat.composer.toPlainText() == ""
        picked = second.card_at(1)
        assert picked is not None and picked.candidate is not None
        assert second.turn is not None and second.turn.chosen_candidate_id == picked.candidate.id
        QTest.keyClick(second.reason_edit, Qt.Key.Key_Escape)
        press(window, Qt.Key.Key_1)  # focus on the turns: picks the first card instead
        top = second.card_at(0)
        assert top is not None and top.candidate is not None
        assert second.turn.chosen_candidate_id == top.candidate.id
        assert repo.labels.count() == 1

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_ctrl_z_undoes_typing_alt_z_undoes_the_pick(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=3, max_tokens=32)
    chat, repo = window.chat, db()

    async def flow() -> None:
        await window.start()
        await activate(window)
        turn = await finished_turn(window, "Name a colour.")
        first = turn.card_at(0)
        assert first is not None
        first.pick_button.click()
        assert repo.labels.count() == 1
        QTest.keyClick(turn.reason_edit, Qt.Key.Key_Escape)
        assert QApplication.focusWidget() is chat.composer
        QTest.keyClicks(chat.composer, "hello")
        QTest.keyClick(chat.composer, Qt.Key.Key_Z, CTRL)
        assert chat.composer.toPlainText() == "" and repo.labels.count() == 1
        assert status(window).startswith("Undid typing in the message box")  # says which
        QTest.keyClick(chat.composer, Qt.Key.Key_Z, CTRL)  # nothing typed to undo
        assert repo.labels.count() == 1, "Ctrl+Z in the message box undid the pick"
        assert status(window) == ("Nothing to undo in the message box — Alt+Z undoes the "
                                  "last pick")
        QTest.keyClick(chat.composer, Qt.Key.Key_Z, ALT)
        assert repo.labels.count() == 0
        assert turn.turn is not None and turn.turn.chosen_candidate_id is None
        assert status(window) == "Undid the pick on “Name a colour.” and its 2 pairs"
        assert not turn.undo_button.isVisible()
        # Alt+digit picks from the message box; the button on the picked turn undoes.
        QTest.keyClick(chat.composer, Qt.Key.Key_3, ALT)
        assert repo.labels.count() == 1 and turn.undo_button.isVisible()
        turn.undo_button.click()
        assert repo.labels.count() == 0 and "Undid the pick on" in status(window)

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_the_reason_field_is_scrolled_into_view(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    server.reply_length = 260  # tall cards: the reason field is far below the first one
    window = window_for(qtbot, candidates_per_turn=4, max_tokens=400)

    async def flow() -> None:
        await window.start()
        await activate(window)
        turn = await finished_turn(window, "Tell me a long story.")
        assert not in_view(window, turn.card_at(3) or turn)  # the page really is long
        first = turn.card_at(0)
        assert first is not None
        first.pick_button.click()
        assert QApplication.focusWidget() is turn.reason_edit
        await wait_until(lambda: in_view(window, turn.reason_row), 5,
                         "the reason field in view")

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_all_replies_failed_says_so_once(loop: asyncio.AbstractEventLoop, qtbot: object,
                                         server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=4, max_retries=0, max_tokens=32)
    chat = window.chat

    async def flow() -> None:
        await window.start()
        await activate(window)
        server.inject("server_error", times=1)
        turn = await finished_turn(window, "Hello there")
        assert turn.turn is not None and len(turn.turn.candidates) == 4
        error = turn.turn.candidates[0].error
        assert error and all(c.error == error for c in turn.turn.candidates)
        assert "pick the best" not in turn.status.text()
        assert "press" not in turn.status.text()
        assert "All 4 replies failed" in turn.status.text()
        assert sum(error in t for t in shown_texts(turn)) == 1  # the banner only
        for card in turn.cards.values():
            assert "Failed" in card.body.toPlainText() and "failed" in card.footer.text()
        # Retry sends the turn again; the failed one stays as it was.
        assert turn.retry_button.text() == "Retry"
        turn.retry_button.click()
        await wait_until(lambda: not chat.generating, 30, "the retry")
        again = chat.widgets[-1]
        assert again is not turn and again.turn is not None
        assert all(c.text.strip() and not c.error for c in again.turn.candidates)
        assert "pick the best" in again.status.text()

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_a_long_prompt_is_folded_and_its_error_scrolled_to(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=4, max_retries=0, max_tokens=32)
    line = "lorem ipsum dolor sit amet " * 3
    prompt = "\n".join(f"Line {i}: {line}" for i in range(600)).strip()
    assert len(prompt) > 50_000

    async def flow() -> None:
        await window.start()
        await activate(window)
        server.inject("server_error", times=1)
        turn = await finished_turn(window, prompt)
        assert turn.prompt_view.height() < 400, "the whole prompt is shown"
        assert turn.messages[-1].content == prompt  # folded on screen only
        await wait_until(lambda: in_view(window, turn.error_row), 5, "the error in view")
        assert turn.bubble.toggle.isVisible()
        assert turn.bubble.toggle.text() == f"Show all ({len(prompt):,} characters)"
        turn.bubble.toggle.click()
        assert "Line 599" in turn.prompt_view.toPlainText()

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_a_prompt_beyond_the_built_in_models_context_is_held_back(
        loop: asyncio.AbstractEventLoop, qtbot: object, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        config.default_gguf_path()
    except config.ConfigError as exc:
        pytest.skip(f"built-in model unavailable: {exc}")
    window = window_for(qtbot, provider="local", candidates_per_turn=4, n_ctx=2048)
    chat = window.chat
    prompt = "word " * 10_000

    async def flow() -> None:
        await window.start()
        assert window.backend.provider_kind == "local"
        chat.composer.setFocus()
        chat.composer.setPlainText(prompt)
        QTest.keyClick(chat.composer, Qt.Key.Key_Return)
        assert chat.widgets == [], "sent although it cannot fit"
        assert chat.warning.isVisible()
        assert "Settings → Context size (n_ctx)" in chat.warning.label.text()
        assert "2,048" in chat.warning.label.text()
        assert chat.composer.toPlainText() == prompt  # nothing lost
        chat.warning.dismiss()
        chat.composer.setPlainText("A short question?")
        QTest.keyClick(chat.composer, Qt.Key.Key_Return)
        assert not chat.warning.isVisible() and len(chat.widgets) == 1
        chat.stop()
        await wait_until(lambda: not chat.generating, 60, "stopped")

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_a_reply_the_full_context_cut_says_so_not_max_tokens(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    """llama.cpp ends a reply the full context stopped with the same finish reason as one cut
    at max tokens; a card says which (a new user read "cut at max tokens" at 100 tokens with
    max tokens at 256, after a dozen turns had filled the context)."""
    try:
        config.default_gguf_path()
    except config.ConfigError as exc:
        pytest.skip(f"built-in model unavailable: {exc}")
    window = window_for(qtbot, provider="local", candidates_per_turn=1, n_ctx=256,
                        max_tokens=400, temperature=0.0)
    chat = window.chat

    async def flow() -> None:
        await window.start()
        assert window.backend.provider_kind == "local"
        widget = await send(window, "Count from 1 to 400, one number after another, "
                                    "separated by commas.")
        await wait_until(lambda: not chat.generating and widget.turn is not None, 120,
                         "the reply")
        assert widget.turn is not None
        (reply,) = widget.turn.candidates
        assert reply.finish_reason == "length" and (reply.completion_tokens or 0) < 400
        card = widget.cards[reply.index]
        assert "cut: the chat's context is full" in card.footer.text()
        assert "cut at max tokens" not in card.footer.text()

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_the_chat_fits_the_minimum_window_size(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=4, max_tokens=32)
    chat = window.chat

    def placeholder_fits() -> bool:
        box = chat.composer
        needed = box.fontMetrics().horizontalAdvance(box.placeholderText())
        return box.viewport().width() >= needed

    def fits() -> bool:
        page = chat.scroll_area.widget()
        return page is not None and page.width() <= chat.scroll_area.viewport().width()

    async def flow() -> None:
        await window.start()
        await activate(window)
        window.resize(590, 547)
        await asyncio.sleep(0.1)
        assert fits(), "the empty page (example prompts) is cut at the right edge"
        assert placeholder_fits(), "the message box shrinks to a cut placeholder"
        turn = await finished_turn(window, "Name a colour, and explain why in a sentence.")
        chat.composer.setFocus()
        QTest.keyClick(chat.composer, Qt.Key.Key_1, ALT)  # the reason row shows too
        await asyncio.sleep(0.1)
        assert turn.reason_row.isVisible()
        assert fits(), "the turn is cut at the right edge"
        assert turn.columns == 1 or chat.width() >= 640
        assert placeholder_fits(), "the message box shrinks to a cut placeholder"

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_copy_stop_one_and_regenerate_one_reply(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=3, max_tokens=200)
    chat, repo = window.chat, db()

    async def flow() -> None:
        await window.start()
        await activate(window)
        # Stop one reply: it keeps its text so far; the others go on to the end.
        server.chunk_delay_s = 0.03
        server.reply_length = 60
        turn = await send(window, "Tell me a story")
        card = turn.cards[1]
        await wait_until(lambda: len(card.text.split()) > 5, 30, "text in reply 2")
        assert card.stop_button.isVisible() and not card.copy_button.isVisible()
        card.stop_button.click()
        await wait_until(lambda: not chat.generating, 60, "the turn")
        assert turn.turn is not None
        stopped, others = turn.turn.candidates[1], turn.turn.candidates[::2]
        assert stopped.finish_reason == "cancelled" and stopped.text.startswith("Reply 1")
        assert all(c.finish_reason == "stop" for c in others)
        assert len(stopped.text.split()) < len(others[0].text.split())
        assert repo.conversations.get_turn(turn.turn.id or 0).candidates[1].text == stopped.text

        # Copy: the whole reply as Markdown.
        server.chunk_delay_s = 0.001
        card0 = turn.cards[0]
        card0.copy_button.click()
        assert QGuiApplication.clipboard().text() == turn.turn.candidates[0].text

        # Regenerate one reply: one request for one reply; it replaces that candidate.
        before = [(c.id, c.text) for c in turn.turn.candidates]
        requests = len(server.requests)
        turn.cards[2].regen_button.click()
        await wait_until(lambda: not chat.generating, 30, "the regenerated reply")
        bodies = [r.body for r in server.requests[requests:] if r.body]
        assert [b.get("n", 1) for b in bodies] == [1]
        after = [(c.id, c.text) for c in repo.conversations.get_turn(turn.turn.id or 0).candidates]
        assert after[:2] == before[:2]
        assert after[2][0] == before[2][0] and after[2][1] != before[2][1]
        assert turn.cards[2].text == after[2][1]

        # After a pick a reply cannot be regenerated (the pairs hold its text).
        press(window, Qt.Key.Key_1)
        # (the server's regenerated reply reads "Reply 0: …" like reply 1, the same reply:
        # the pick is saved as a tie, still a label that holds the turn's replies)
        assert sum(repo.labels.kinds().values()) == 1
        assert not turn.cards[2].regen_button.isEnabled()
        assert "Undo the pick" in turn.cards[2].regen_button.toolTip()
        cand = turn.turn.candidates[2]
        with pytest.raises(StorageError):
            repo.conversations.put_candidate(turn.turn.id or 0, cand)
        # Undo the pick: the turn is unpicked again, so its replies can be regenerated.
        press(window, Qt.Key.Key_Z, Qt.KeyboardModifier.AltModifier)
        assert not repo.labels.kinds()
        assert turn.cards[2].regen_button.isEnabled(), turn.cards[2].regen_button.toolTip()

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_retry_only_the_failed_replies(loop: asyncio.AbstractEventLoop, qtbot: object,
                                       server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=3, max_retries=0, max_tokens=32)
    chat, repo = window.chat, db()

    async def flow() -> None:
        await window.start()
        await activate(window)
        server.inject("choice_error", times=1, choice=1)
        turn = await finished_turn(window, "Name a colour.")
        assert turn.turn is not None
        bad = turn.turn.candidates[1]
        assert bad.error, "the server's choice error did not reach the candidate"
        card = turn.cards[1]
        # The failed card says why (not just its latency); the banner does not repeat it.
        assert any(bad.error in t for t in shown_texts(card)) and "failed" in card.footer.text()
        assert sum(bad.error in t for t in shown_texts(turn)) == 1
        assert "1 of 3 replies failed" in turn.error_label.text()
        assert turn.retry_button.text() == "Retry failed"
        good = [(c.id, c.text) for c in turn.turn.candidates if c.index != 1]
        requests = len(server.requests)
        turn.retry_button.click()
        await wait_until(lambda: not chat.generating, 30, "the retry")
        bodies = [r.body for r in server.requests[requests:] if r.body]
        assert [b.get("n", 1) for b in bodies] == [1]
        stored = repo.conversations.get_turn(turn.turn.id or 0).candidates
        assert [(c.id, c.text) for c in stored if c.index != 1] == good
        assert stored[1].text.strip() and not stored[1].error
        assert not turn.error_row.isVisible()
        assert "pick the best" in turn.status.text()

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


@pytest.mark.timeout(120)
def test_a_turn_not_sent_for_want_of_a_provider_fails_its_cards_and_keeps_the_history(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    """A new user: pick, switch to a provider without a key, send (fails), switch back,
    Retry: the cards said they failed, and the retried turn still carried the conversation."""
    window = window_for(qtbot, candidates_per_turn=2, max_tokens=24)
    chat = window.chat

    async def flow() -> None:
        await window.start()
        await activate(window)
        first = await finished_turn(window, "My name is Zork. Remember it.")
        assert first.turn is not None
        press(window, Qt.Key.Key_1, Qt.KeyboardModifier.AltModifier)
        picked = first.turn.chosen_candidate_id
        assert picked is not None
        window.backend.session.provider = None  # as when the chosen provider has no key
        window.backend.session.chat = None
        window.backend.session.provider_error = "OPENAI_API_KEY is not set"
        failed = await send(window, "What is my name?")
        await wait_until(lambda: not chat.generating, 10, "the unsent turn")
        assert all(not c.stop_button.isVisible() for c in failed.cards.values())
        assert "Not sent" in failed.status.text() and failed.error_row.isVisible()
        assert [m.role for m in failed.messages] == ["user", "assistant", "user"]
        await window.backend.rebuild_provider()
        failed.retry_button.click()
        nxt = chat.widgets[-1]
        await wait_until(lambda: not chat.generating, 30, "the retried turn")
        assert nxt.turn is not None
        assert [m.role for m in nxt.turn.messages] == ["user", "assistant", "user"]

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def test_a_streaming_replys_stop_button_stays_put_while_its_text_grows(qtbot: object) -> None:
    """Stop sits in the card's header: the reply growing below it never moves it away from
    the pointer (at the card's foot it slid down with every line)."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    from rlhf_desktop.ui.chat.cards import CandidateCard
    from rlhf_desktop.ui.markdown_render import MarkdownRenderer

    card = CandidateCard(0, MarkdownRenderer())
    qtbot.addWidget(card)  # type: ignore[attr-defined]
    card.resize(480, 200)
    card.show()
    card.append("The first words of a reply.")
    card._render()
    QApplication.processEvents()
    before = card.stop_button.mapTo(card, QPoint(0, 0))
    card.append("\n\nAnother line of a long reply that keeps coming." * 30)
    card._render()
    QApplication.processEvents()
    assert card.stop_button.isVisible()
    assert card.stop_button.mapTo(card, QPoint(0, 0)) == before


def test_a_cut_replys_footer_follows_the_max_tokens_it_was_asked_with(qtbot: object) -> None:
    """A turn made at 256 whose reply is regenerated after max tokens went down to 64 stops
    at 64: that is a max-tokens cut, not a full context (a regenerate asks with today's
    setting). An arena's built-in source is judged by its origin; a remote reply never."""
    from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
    from rlhf_desktop.ui.markdown_render import MarkdownRenderer

    widget = TurnWidget("Count to 400.", 1, MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    now = {"max_tokens": 64}
    widget.max_tokens_now = lambda: now["max_tokens"]
    cut = Candidate(index=0, text="1, 2, 3", finish_reason="length", completion_tokens=64,
                    id=1)
    turn = Turn(messages=[Message("user", "Count to 400.")], params=SamplingParams(
        n=1, max_tokens=256), provider="local", model="m", candidates=[cut], id=1,
        conversation_id=1)
    widget.set_turn(turn)
    footer = widget.cards[0].footer.text()
    assert "cut at max tokens" in footer and "context" not in footer
    now["max_tokens"] = 256  # the same reply at 100 of 256: the context was full
    widget.set_turn(replace(turn, candidates=[replace(cut, completion_tokens=100)]))
    assert "the chat's context is full" in widget.cards[0].footer.text()
    # an arena turn: a built-in source's reply by its origin, a remote one never
    arena = replace(turn, provider="arena", candidates=[
        replace(cut, completion_tokens=100, origin={"provider": "local"})])
    widget.set_turn(arena)
    assert "the chat's context is full" in widget.cards[0].footer.text()
    widget.set_turn(replace(arena, candidates=[
        replace(cut, completion_tokens=100, origin={"provider": "azure"})]))
    assert "cut at max tokens" in widget.cards[0].footer.text()
