"""Settings → Candidate sources: choosing a source's provider greys out the fields that do
not apply instead of hiding them, so no row moves under the pointer; an empty list shows a
hint to add a source instead of a form that ignores typing."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QApplication

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.ui.settings.sources import SourcesEditor


def choose(editor: SourcesEditor, provider: str) -> None:
    """Pick ``provider`` in the combo box, as a click on its item does."""
    editor.provider.setCurrentIndex(editor.provider.findData(provider))
    editor.provider.activated.emit(editor.provider.currentIndex())
    QApplication.processEvents()


def rows(editor: SourcesEditor) -> dict[str, QRect]:
    fields = {"name": editor.name, "provider": editor.provider, "model": editor.model,
              "temperature": editor.temperature, "count": editor.count,
              "version": editor.version, "base_url": editor.base_url, "active": editor.active,
              "arena": editor.arena}
    return {key: field.geometry() for key, field in fields.items()}


@pytest.mark.timeout(60)
def test_choosing_a_provider_keeps_every_row_in_place(qtbot: object) -> None:
    editor = SourcesEditor(Settings())
    qtbot.addWidget(editor)  # type: ignore[attr-defined]
    editor.resize(640, 560)
    editor.show()
    editor.add_button.click()
    QApplication.processEvents()
    before = rows(editor)
    for provider in ("local", "compatible", "azure", "local", "auto"):
        choose(editor, provider)
        assert rows(editor) == before, provider
        assert editor.model.isVisible() and editor.version.isVisible() \
            and editor.base_url.isVisible()
    choose(editor, "local")
    assert editor.version.isEnabled() and not editor.model.isEnabled()
    assert not editor.base_url.isEnabled() and not editor.model_label.isEnabled()
    assert "built-in model" in editor.model.toolTip()  # says why it is greyed out
    choose(editor, "compatible")
    assert editor.base_url.isEnabled() and editor.model.isEnabled()
    assert not editor.version.isEnabled()
    assert editor.sources()[0].provider == "compatible"



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


@pytest.mark.timeout(60)
def test_a_long_source_row_wraps_instead_of_scrolling_sideways(qtbot: object) -> None:
    from PySide6.QtCore import Qt

    src = CandidateSource("a rather long source name", provider="local", temperature=1.3,
                          count=1, chat_model_version=2)
    editor = SourcesEditor(Settings(candidate_sources=[src.to_dict()]))
    qtbot.addWidget(editor)  # type: ignore[attr-defined]
    editor.resize(420, 400)
    editor.show()
    QApplication.processEvents()
    assert editor.list.wordWrap()
    assert editor.list.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    item = editor.list.item(0)
    assert "chat model v2 (tuned)" in item.text() and item.toolTip() == item.text()
