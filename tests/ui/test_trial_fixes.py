"""Defects a new user hit in the window (trial of round 4): the turn's Undo button names
the label it undoes, a blind pick the model never ranked does not claim the cards show its
ranking, an empty sources list does not show a form that ignores typing, and the tune plan
says "1 step"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Candidate, CandidateSource, Message, SamplingParams, Turn
from rlhf_desktop.services.tuning_state import TunePlan
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.sources_editor import SourcesEditor
from rlhf_desktop.ui.turn_widget import TurnWidget


def labeled_turn(kind: str, blind: bool = False) -> Turn:
    """A saved turn of three unscored replies holding a label of ``kind``."""
    cands = [Candidate(index=i, text=f"reply {i}", id=10 + i, position=i) for i in range(3)]
    turn = Turn(conversation_id=1, messages=[Message("user", "Hi")], provider="local",
                model="m", params=SamplingParams(n=3), id=7, candidates=cands, blind=blind)
    turn.label_kind = kind
    if kind in ("pick", "ranking", "edit"):
        turn.chosen_candidate_id = 11
    if kind in ("tie", "ranking"):
        turn.tied_candidate_ids = (11, 10) if kind == "tie" else (11, 12, 10)
    return turn


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind,text", [("pick", "Undo pick"), ("tie", "Undo tie"),
                                       ("all_bad", "Undo all bad"),
                                       ("ranking", "Undo ranking")])
def test_undo_button_names_the_label_it_undoes(qtbot: object, kind: str, text: str) -> None:
    widget = TurnWidget("Hi", 3, MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.set_turn(labeled_turn(kind))
    widget.mark_pick(widget.turn.chosen_candidate_id if widget.turn else None,
                     undoable=True)
    assert widget.undo_button.text() == text
    assert "pick" not in widget.undo_button.toolTip()


@pytest.mark.timeout(60)
def test_a_blind_pick_the_model_never_ranked_does_not_claim_its_ranking_shows(
        qtbot: object) -> None:
    widget = TurnWidget("Hi", 3, MarkdownRenderer(), blind=True)
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.set_turn(labeled_turn("pick", blind=True))
    said = widget.status.text()
    assert "the model had not ranked these replies" in said
    assert "now show its ranking" not in said


@pytest.mark.timeout(60)
def test_empty_sources_list_shows_a_hint_instead_of_a_dead_form(qtbot: object) -> None:
    editor = SourcesEditor(Settings())
    qtbot.addWidget(editor)  # type: ignore[attr-defined]
    editor.show()
    assert editor.form_box.isHidden() and not editor.empty_hint.isHidden()
    assert "Add source" in editor.empty_hint.text()
    editor.add()
    assert not editor.form_box.isHidden() and editor.empty_hint.isHidden()
    assert editor.name.isEnabled() and editor.name.text() == "source 1"
    editor.remove()
    assert editor.form_box.isHidden() and not editor.empty_hint.isHidden()
    with_sources = SourcesEditor(Settings(candidate_sources=[
        CandidateSource("a").to_dict(), CandidateSource("b").to_dict()]))
    qtbot.addWidget(with_sources)  # type: ignore[attr-defined]
    assert not with_sources.form_box.isHidden() and with_sources.empty_hint.isHidden()


def test_tune_plan_says_one_step_in_the_singular() -> None:
    assert TunePlan(4, 1, 200.0, "measured").text().startswith(
        "4 preference pairs, 1 step, about ")
    assert TunePlan(1, 1, None, "").text() == "1 preference pair, 1 step"
    assert TunePlan(8, 2, None, "").text() == "8 preference pairs, 2 steps"


@pytest.mark.timeout(60)
def test_status_bar_names_the_arena_once(qtbot: object) -> None:
    from types import SimpleNamespace

    from PySide6.QtWidgets import QMainWindow

    from rlhf_desktop.ui.status_area import StatusArea

    window = QMainWindow()
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    area = StatusArea(window.statusBar())
    arena = SimpleNamespace(provider_error=None, provider_kind="arena",
                            provider_model="cool vs hot",
                            provider_reason="Arena: cool (1) vs hot (1)",
                            provider_why="Arena: cool (1) vs hot (1)")
    area.show_provider(arena)  # type: ignore[arg-type]
    assert area.provider_label.text() == "Arena · cool vs hot"
    assert area.provider_why.text() == ""
    assert "cool (1) vs hot (1)" in area.provider_label.toolTip()
    local = SimpleNamespace(provider_error=None, provider_kind="local", provider_model="m",
                            provider_reason="no credentials found",
                            provider_why="no credentials found")
    area.show_provider(local)  # type: ignore[arg-type]
    assert area.provider_why.text() == "— no credentials found"


@pytest.mark.timeout(60)
def test_settings_says_replies_per_turn_as_the_chat_does(qtbot: object) -> None:
    from PySide6.QtWidgets import QLabel

    from rlhf_desktop.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    texts = [label.text() for label in dialog.findChildren(QLabel)]
    assert "Replies per turn" in texts and "Candidates per turn" not in texts


def test_shortcuts_list_says_enter_sends_as_the_message_box_does() -> None:
    from rlhf_desktop.ui.shortcuts import SHORTCUTS

    keys, action = SHORTCUTS[0]
    assert keys.split(" or ")[0] == "Enter" and "Shift+Enter adds a line" in action


@pytest.mark.timeout(60)
def test_export_dialog_starts_in_the_home_folder(qtbot: object,
                                                 loop: asyncio.AbstractEventLoop,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the working folder (the project checkout, or / for a menu launch)."""
    from PySide6.QtWidgets import QFileDialog

    from rlhf_desktop.ui.backend import Backend
    from rlhf_desktop.ui.dataset_view import DatasetView
    from tests.ui.conftest import run

    backend = Backend(provider=None)
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    seen: list[str] = []

    def ask(parent: object, caption: str, directory: str, filters: str) -> tuple[str, str]:
        seen.append(directory)
        return "", ""  # the user cancels

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(ask))
    view.export_dialog()
    assert [Path(d) for d in seen] == [Path.home() / "preferences.jsonl"]
    run(loop, backend.aclose())


@pytest.mark.timeout(60)
def test_status_bar_message_gets_the_room_of_the_providers_why(qtbot: object) -> None:
    from types import SimpleNamespace

    from PySide6.QtWidgets import QMainWindow

    from rlhf_desktop.ui.status_area import StatusArea

    window = QMainWindow()
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    area = StatusArea(window.statusBar())
    area.show_provider(SimpleNamespace(  # type: ignore[arg-type]
        provider_error=None, provider_kind="local", provider_model="m",
        provider_reason="no Azure OpenAI or OpenAI credentials found",
        provider_why="no Azure OpenAI or OpenAI credentials found"))
    assert not area.provider_why.isHidden()
    window.statusBar().showMessage("Saved your ranking of 3 replies: 3 weighted preference "
                                   "pairs · Alt+Z undoes it")
    assert area.provider_why.isHidden() and not area.provider_label.isHidden()
    window.statusBar().clearMessage()
    assert not area.provider_why.isHidden()
