"""Edit and resend a message in the window, as in ChatGPT, Open WebUI or LM Studio: the
edit is a new branch with new replies, the old branch stays behind "‹ 1/2 ›" with its
labels, and only the branch shown is sent to the model. Against the Azure-protocol test
server over a real socket, on the window's real database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.main_window import MainWindow
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import activate, azure_env, db, press, send, window_for

KEY = "sk-azure-SECRET-branches-7a3e"
ALT = Qt.KeyboardModifier.AltModifier


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureServer]:
    """The Azure-protocol server, with the app's environment pointing at it."""
    with azure_env(monkeypatch, KEY) as srv:
        yield srv


async def finished_turn(window: MainWindow, text: str) -> TurnWidget:
    widget = await send(window, text)
    await wait_until(lambda: not window.chat.generating, 60, "the turn")
    await asyncio.sleep(0.05)
    return widget


def prompts(window: MainWindow) -> list[str]:
    return [w.bubble.text for w in window.chat.widgets]


def sent_texts(server: AzureServer) -> list[str]:
    """The messages (not the system prompt) of the last chat request the server saw."""
    bodies = [r.body for r in server.requests if r.body and "messages" in r.body]
    return [m["content"] for m in bodies[-1]["messages"] if m["role"] != "system"]


def click(button: object) -> None:
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[call-overload]


@pytest.mark.timeout(120)
def test_edit_and_resend_branches_and_the_old_branch_stays_browsable(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=3, max_tokens=32)
    chat, repo = window.chat, db()
    said: list[str] = []
    chat.message.connect(said.append)

    async def flow() -> None:
        await window.start()
        w1 = await finished_turn(window, "Name a colour")
        w2 = await finished_turn(window, "Name a fruit")
        await activate(window)
        press(window, Qt.Key.Key_2, ALT)  # a pick on the turn whose message gets edited
        QTest.keyClick(w2.reason_edit, Qt.Key.Key_Escape)
        assert w2.turn is not None and w2.turn.chosen_candidate_id is not None
        picked = w2.turn.chosen_candidate_id
        pairs = sorted((p.chosen, p.rejected) for p in repo.pairs.stream())
        assert len(pairs) == 2
        await finished_turn(window, "Name a herb")
        assert all(w.bubble.edit_button.isVisible() for w in chat.widgets)
        assert not any(w.bubble.branch_label.isVisible() for w in chat.widgets)

        # Edit opens the message in an inline editor; Enter sends it as a new branch.
        click(w2.bubble.edit_button)
        assert w2.bubble.editing and w2.bubble.edit_box.toPlainText() == "Name a fruit"
        box = w2.bubble.edit_box  # as tall as the message, not a page of blank lines
        assert box.height() < 5 * box.fontMetrics().lineSpacing()
        w2.bubble.edit_box.selectAll()
        QTest.keyClicks(w2.bubble.edit_box, "Name a vegetable")
        QTest.keyClick(w2.bubble.edit_box, Qt.Key.Key_Return)
        assert chat.generating and prompts(window) == ["Name a colour", "Name a vegetable"]
        # While the replies stream, editing is refused (the buttons say why).
        assert not w1.bubble.edit_button.isEnabled()
        click(w1.bubble.edit_button)
        assert not w1.bubble.editing
        chat.resend_edit(w1, "Name a shape")
        assert "still streaming" in said[-1]
        edited = chat.widgets[-1]
        await wait_until(lambda: not chat.generating, 60, "the edited turn")
        assert edited.turn is not None and len(edited.turn.candidates) == 3
        assert all(c.text for c in edited.turn.candidates)
        # Only the branch shown went to the model: the first exchange and the edit.
        texts = sent_texts(server)
        assert texts[0] == "Name a colour" and texts[-1] == "Name a vegetable"
        assert "Name a fruit" not in texts and "Name a herb" not in texts
        assert edited.bubble.branch_label.isVisible()
        assert edited.bubble.branch_label.text() == "2/2"
        assert edited.bubble.prev_button.isEnabled()
        assert not edited.bubble.next_button.isEnabled()
        turns = repo.conversations.list_turns(edited.turn.conversation_id)
        assert len(turns) == 4  # nothing deleted
        assert sorted((p.chosen, p.rejected) for p in repo.pairs.stream()) == pairs

        # An empty edit is refused with a clear message; the editor stays open. Esc cancels.
        edited.bubble.start_edit()
        edited.bubble.edit_box.setPlainText("   ")
        QTest.keyClick(edited.bubble.edit_box, Qt.Key.Key_Return)
        assert not chat.generating and edited.bubble.editing
        assert "empty" in edited.bubble.edit_note.text()
        QTest.keyClick(edited.bubble.edit_box, Qt.Key.Key_Escape)
        assert not edited.bubble.editing and edited.bubble.view.isVisible()
        assert QApplication.focusWidget() is edited.bubble.edit_button  # the keyboard stays

        # ‹ shows the old branch again, with its later turn and its pick.
        click(edited.bubble.prev_button)
        assert prompts(window) == ["Name a colour", "Name a fruit", "Name a herb"]
        old = chat.widgets[1]
        assert old.bubble.branch_label.text() == "1/2"
        assert old.turn is not None and old.turn.chosen_candidate_id == picked
        card = next(c for c in old.cards.values()
                    if c.candidate is not None and c.candidate.id == picked)
        assert card.property("state") == "chosen" and "Your pick" in card.state_badge.text()

        # Undo after switching branches: Alt+Z does not undo the pick on the branch not
        # shown (it would change what the user cannot see); it says where the label is, and
        # undoes it once that branch is shown again.
        old_turn_id = old.turn.id or 0
        click(old.bubble.next_button)
        assert prompts(window) == ["Name a colour", "Name a vegetable"]
        await activate(window)
        press(window, Qt.Key.Key_Z, ALT)
        assert "not shown here" in said[-1], said[-1]
        assert sorted((p.chosen, p.rejected) for p in repo.pairs.stream()) == pairs  # kept
        assert repo.conversations.get_turn(old_turn_id).chosen_candidate_id == picked
        click(chat.widgets[1].bubble.prev_button)
        assert prompts(window) == ["Name a colour", "Name a fruit", "Name a herb"]
        await activate(window)
        press(window, Qt.Key.Key_Z, ALT)
        assert len(list(repo.pairs.stream())) == 0  # its pairs went with it
        assert "Undid the pick" in said[-1]
        assert repo.conversations.get_turn(old_turn_id).chosen_candidate_id is None
        click(chat.widgets[1].bubble.next_button)
        # The branch shown is remembered: leaving the chat and coming back shows it.
        conv = chat.conversation_id
        chat.show_conversation(None)
        chat.show_conversation(conv)
        assert prompts(window) == ["Name a colour", "Name a vegetable"]

        # ↑ in the empty message box edits the last message; the first message can be
        # edited too: the chat starts again, the old start stays behind ‹ ›.
        chat.composer.setFocus()
        QTest.keyClick(chat.composer, Qt.Key.Key_Up)
        assert chat.widgets[-1].bubble.editing
        QTest.keyClick(chat.widgets[-1].bubble.edit_box, Qt.Key.Key_Escape)
        first = chat.widgets[0]
        click(first.bubble.edit_button)
        first.bubble.edit_box.setPlainText("Name a planet")
        click(first.bubble.send_edit_button)
        await wait_until(lambda: not chat.generating, 60, "the edit of the first message")
        assert prompts(window) == ["Name a planet"]
        assert sent_texts(server) == ["Name a planet"]
        assert chat.widgets[0].bubble.branch_label.text() == "2/2"

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())
