"""The status bar: the provider (the arena named once, a tuned version by its window name) and
why it was chosen, the why giving its room to a message, and no accuracy figure for a model
trained on under 20 labels."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop import config
from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.model.versions import COLUMNS
from tests.ui.conftest import run
from tests.ui.helpers import add_version, db


def test_the_status_bar_says_why_the_provider_was_chosen(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    pytest.importorskip("xllamacpp")
    config.default_gguf_path()
    run(loop, window.backend.rebuild_provider())
    why = window.provider_why
    assert why.isVisible()
    assert "no Azure OpenAI or OpenAI credentials found" in why.text()
    assert window.provider_label.text().startswith("Built-in model · ")
    assert "Why this provider" in why.toolTip() and "Settings" in why.toolTip()


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
    # a tuned version of the built-in model: the window's name for it, the file in the tip
    tuned = SimpleNamespace(provider_error=None, provider_kind="local",
                            provider_model="SmolLM2-135M-Instruct.Q4_1+v0002",
                            provider_reason="chosen in Settings", provider_why="")
    area.show_provider(tuned)  # type: ignore[arg-type]
    assert area.provider_label.text() == "Built-in model · chat model v2 (tuned)"
    assert "SmolLM2-135M-Instruct.Q4_1+v0002" in area.provider_label.toolTip()


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


def test_an_accuracy_from_under_20_labels_is_hidden_in_the_status_bar_marked_early_on_the_page(
        window: MainWindow) -> None:
    repo = db()
    add_version(repo, 1, 5, 0.27)
    window.backend.latest = repo.versions.latest()
    window.backend.refresh_status()
    text = window.retrain_label.text()
    assert "model v1" in text and "%" not in text and "27" not in text, text
    window.show_page(2)
    assert window.model_view.accuracy_value.text() == "27 %"  # the model page marks it early
    assert "early estimate" in window.model_view.accuracy_caption.text()
    window.model_view.refresh()
    table = window.model_view.table
    cell = table.item(0, COLUMNS.index("CV accuracy"))  # a figure from 5 labels is marked
    assert cell.text() == "27 % (early)" and "early estimate from 5 labels" in cell.toolTip()
    add_version(repo, 2, 25, 0.61)
    window.backend.latest = repo.versions.latest()
    window.backend.refresh_status()
    assert "model v2 · CV accuracy 61 %" in window.retrain_label.text()
    window.model_view.refresh()
    assert table.item(0, COLUMNS.index("CV accuracy")).text() == "61.0 %"
