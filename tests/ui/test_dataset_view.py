"""The dataset page: deleting the selected pairs asks with their count and can be undone
(also after their ids were reused and their chat deleted), and the filter shows where
each row matched."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from rlhf_desktop.domain import Candidate, Message, PreferencePair, SamplingParams, Turn
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.dataset.page import MATCH_COLUMN
from rlhf_desktop.ui.main_window import MainWindow
from tests.ui.helpers import answer_next_box, db, settle


def test_delete_selected_asks_with_the_count_and_can_be_undone(window: MainWindow) -> None:
    repo = db()
    repo.pairs.add([PreferencePair(prompt=(Message("user", f"q{i}"),), chosen=f"good {i}",
                                   rejected=f"bad {i}", reason="why" if i == 1 else None)
                    for i in range(5)])
    window.show_page(1)
    view = window.dataset
    view.table.selectRow(0)
    view.table.selectionModel().select(
        view.model.index(2, 0), view.table.selectionModel().SelectionFlag.Select
        | view.table.selectionModel().SelectionFlag.Rows)
    assert len(view.selected_ids()) == 2
    seen: list[str] = []
    answer_next_box(QMessageBox.StandardButton.No, seen)
    QTest.mouseClick(view.delete_button, Qt.MouseButton.LeftButton)
    settle(window)
    assert repo.pairs.count() == 5, "the button deleted without asking"
    assert seen and "Delete 2 preference pairs?" in seen[0]

    before = {(p.chosen, p.rejected, p.reason, p.created_at) for p in repo.pairs.stream()}
    labels_before = repo.labels.count()
    answer_next_box(QMessageBox.StandardButton.Yes, seen)
    QTest.mouseClick(view.delete_button, Qt.MouseButton.LeftButton)
    settle(window)
    assert repo.pairs.count() == 3 and repo.labels.count() == labels_before - 2
    undo = window.status.undo_button
    assert undo.isVisible() and "Deleted 2 preference pairs" in window.statusBar().currentMessage()
    assert undo.text() == "Undo delete of 2 preference pairs"
    assert not view.detail.toPlainText()  # the deleted pair is not shown any more
    QTest.mouseClick(undo, Qt.MouseButton.LeftButton)
    assert {(p.chosen, p.rejected, p.reason, p.created_at) for p in repo.pairs.stream()} == before
    assert repo.labels.count() == labels_before and view.model.total == 5
    assert not undo.isVisible()


def test_undo_of_a_delete_survives_reused_ids_and_a_deleted_chat() -> None:
    repo = Repository.open()
    conv = repo.conversations.create("c")
    turn = repo.conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", "q")], provider="test", model="m",
        params=SamplingParams(n=3),
        candidates=[Candidate(0, "a"), Candidate(1, "b"), Candidate(2, "c")]))
    assert turn.id is not None and turn.candidates[0].id is not None
    repo.labels.pick(turn.id, turn.candidates[0].id, reason="best")
    ids = [p.id for p in repo.pairs.stream() if p.id is not None]
    kept = repo.pairs.snapshot(ids)
    assert repo.pairs.delete(ids) == 2 and repo.labels.count() == 0
    repo.conversations.delete(conv.id)  # its turn and replies go too
    repo.pairs.add([PreferencePair(prompt=(Message("user", "new"),), chosen="x",
                                   rejected="y")])  # takes the freed ids
    assert repo.pairs.restore(kept) == 2
    pairs = {p.rejected: p for p in repo.pairs.stream()}
    assert set(pairs) == {"b", "c", "y"} and repo.labels.count() == 2
    assert pairs["b"].label_id == pairs["c"].label_id != pairs["y"].label_id
    assert pairs["b"].reason == "best" and pairs["b"].chosen_candidate_id is None
    repo.close()


def test_the_dataset_filter_shows_where_each_row_matched(window: MainWindow) -> None:
    repo = db()
    repo.pairs.add([
        PreferencePair(prompt=(Message("user", "Tell me about zebras"),
                               Message("assistant", "They are striped."),
                               Message("user", "And their habitat?")),
                       chosen="Savannas.", rejected="Oceans."),
        PreferencePair(prompt=(Message("user", "Name an animal"),),
                       chosen="A zebra.", rejected="A rock."),
        PreferencePair(prompt=(Message("user", "Unrelated"),), chosen="x", rejected="y"),
        PreferencePair(prompt=(Message("system", "Be brief."),
                               Message("user", 'Then the user said "hi" at 100%')),
                       chosen="ok", rejected="no"),
    ])
    window.show_page(1)
    view = window.dataset
    assert view.table.isColumnHidden(MATCH_COLUMN)  # no filter, no column
    view.model.reload("zebra")
    model = view.model
    assert model.total == 2
    assert not view.table.isColumnHidden(MATCH_COLUMN)
    header = view.table.horizontalHeader()
    assert header.visualIndex(MATCH_COLUMN) == 0  # the first thing read
    matched = {model.data(model.index(r, 0)): model.data(model.index(r, MATCH_COLUMN))
               for r in range(model.rowCount())}
    assert matched == {"And their habitat?": "earlier turn", "Name an animal": "chosen"}
    # The prompt is searched in its messages' text, not in the JSON around it, and the
    # filter is taken literally (quotes, % and _ included).
    for text, total in (("content", 0), ("user", 1), ('user said "hi"', 1), ("100%", 1),
                        ("1_0", 0), ('"}, {', 0), ("brief", 1)):
        view.model.reload(text)
        assert view.model.total == len(view.model.rows) == total, text
    assert model.data(model.index(0, MATCH_COLUMN)) == "system prompt"
    view.model.reload("zebra")
    view.table.selectRow(next(r for r in range(model.rowCount())
                              if model.data(model.index(r, 0)) == "And their habitat?"))
    marks = view.detail.extraSelections()
    assert marks and all(m.cursor.selectedText().lower() == "zebra" for m in marks)
