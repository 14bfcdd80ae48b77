"""The status bar shows a message whole where it fits (the provider and training status
make room for it), elides one that does not with the whole text in its tooltip, and shows
the provider's why whole when there is room."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QApplication, QMainWindow

from rlhf_desktop.ui import theme
from rlhf_desktop.ui.status_area import StatusArea

AZURE_WHY = ("AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY and AZURE_OPENAI_DEPLOYMENT_NAME "
             "are set")
RANKING = ("Ranking: Alt+1…9 (or Best) on the replies, best first · Enter saves the top ones "
           "· Esc cancels")


@pytest.fixture(autouse=True)
def app_style(qapp: QApplication) -> Iterator[None]:
    """The app's stylesheet (its padding is part of the labels' width)."""
    old = qapp.styleSheet()
    theme.apply(qapp, False)
    yield
    qapp.setStyleSheet(old)


def status_window(qtbot: object, width: int) -> tuple[QMainWindow, StatusArea]:
    window = QMainWindow()
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    area = StatusArea(window.statusBar())
    area.show_provider(SimpleNamespace(  # type: ignore[arg-type]
        provider_error=None, provider_kind="local", provider_model="SmolLM2-135M-Instruct",
        provider_reason="Built-in model — no Azure OpenAI or OpenAI credentials found",
        provider_why="no Azure OpenAI or OpenAI credentials found"))
    area.retrain_label.setText("model v3 · CV accuracy 61 % · 312 pairs · 4 labels to next "
                               "training")
    window.resize(width, 400)
    window.show()
    QApplication.processEvents()
    return window, area


@pytest.mark.timeout(60)
def test_a_message_shows_whole_beside_the_provider(qtbot: object) -> None:
    window, area = status_window(qtbot, 1100)
    window.statusBar().showMessage(RANKING)
    QApplication.processEvents()
    shown = area.message_label
    assert shown.isVisible() and shown.shown_text() == RANKING
    assert shown.toolTip() == RANKING
    # the provider is still named (shortened), its why steps aside for the message
    assert area.provider_label.isVisible() and area.provider_label.shown_text()
    assert area.provider_why.isHidden()
    # a short message leaves the others whole
    window.statusBar().showMessage("Reason saved")
    QApplication.processEvents()
    assert shown.shown_text() == "Reason saved"
    for label in (area.provider_label, area.retrain_label):
        assert label.shown_text() == label.text()
    window.statusBar().clearMessage()
    QApplication.processEvents()
    assert shown.text() == "" and not area.provider_why.isHidden()
    assert area.provider_label.shown_text() == area.provider_label.text()


@pytest.mark.timeout(60)
def test_a_message_too_long_for_the_bar_ends_in_an_ellipsis_with_a_tooltip(
        qtbot: object) -> None:
    window, area = status_window(qtbot, 700)
    message = RANKING + " · " + RANKING
    window.statusBar().showMessage(message)
    QApplication.processEvents()
    shown = area.message_label.shown_text()
    assert shown.endswith("…") and message.startswith(shown[:-1])
    assert area.message_label.toolTip() == message


@pytest.mark.parametrize("width", [1800, 1100])
@pytest.mark.timeout(60)
def test_the_providers_why_shows_whole_or_keeps_its_start_and_end(
        qtbot: object, width: int) -> None:
    _window, area = status_window(qtbot, width)
    area.show_provider(SimpleNamespace(  # type: ignore[arg-type]
        provider_error=None, provider_kind="azure", provider_model="gpt-4o-mini",
        provider_reason=f"Azure OpenAI — {AZURE_WHY}", provider_why=AZURE_WHY))
    QApplication.processEvents()
    shown = area.provider_why.shown_text()
    if width > 1500:
        assert shown == f"— {AZURE_WHY}"
    else:  # no room: whole words dropped from the middle, never "AZURE_OPENAI_A…nd"
        start, end = shown.split(" … ")
        assert f"— {AZURE_WHY}".startswith(start) and AZURE_WHY.endswith(end)
        assert end.endswith("are set") and start.startswith("— AZURE_OPENAI")
        assert _whole_words(shown, f"— {AZURE_WHY}"), shown
    assert AZURE_WHY in area.provider_why.toolTip()


@pytest.mark.timeout(60)
def test_an_elided_status_ends_at_a_word_not_mid_word(qtbot: object) -> None:
    """An elided label stops after a whole word (the training status must not read
    "1/5 labels to n…" beside a message); one long word is still cut."""
    from rlhf_desktop.ui.widgets import ElidedLabel

    text = ("model v1 · trained on 6 pairs · accuracy shown after 20 labels   |   1/5 labels to "
            "next training")
    label = ElidedLabel(text)
    qtbot.addWidget(label)  # type: ignore[attr-defined]
    metrics = label.fontMetrics()
    label.show()
    for cut in range(len(text) - 1, 10, -1):  # a width for every place the text could end
        label.setFixedWidth(metrics.horizontalAdvance(text[:cut] + "…") + 2)
        QApplication.processEvents()
        shown = label.shown_text()
        if shown == text:  # "…" is wider than the letters it would replace
            continue
        kept = shown[:-1]
        assert shown.endswith("…") and text.startswith(kept), shown
        assert not (kept[-1:].isalnum() and text[len(kept)].isalnum()), shown
    one_word = ElidedLabel("Supercalifragilisticexpialidocious")
    qtbot.addWidget(one_word)  # type: ignore[attr-defined]
    one_word.setFixedWidth(metrics.horizontalAdvance("Supercali…") + 2)
    one_word.show()
    QApplication.processEvents()
    assert one_word.shown_text().endswith("…") and len(one_word.shown_text()) > 3


def _whole_words(shown: str, text: str) -> bool:
    """Every word ``shown`` keeps is a whole word of ``text`` (an ending "…" aside)."""
    words = set(text.split(" "))
    return all(w.removesuffix("…") in words for w in shown.split(" ") if w not in ("…", ""))


@pytest.mark.parametrize("kind", ["azure", "local"])
@pytest.mark.timeout(120)
def test_the_status_bar_never_cuts_a_word_and_keeps_the_provider_and_the_labels_to_next(
        window: object, kind: str) -> None:
    """With a trained reward model, at 1400 px and at the window's minimum width, with and
    without a long message: the provider and its model or deployment show whole, then the
    labels to the next training (its whole parts), then the provider's why (whole words
    dropped from its middle, or none); nothing is cut mid-word, and each tooltip has the
    whole text."""
    from rlhf_desktop.services.ranking.retraining import RetrainStatus
    from rlhf_desktop.ui.main_window import MainWindow
    from tests.ui.helpers import add_version, db, resize, settle
    from tests.ui.test_window_layout import MIN_SIZE

    assert isinstance(window, MainWindow)
    add_version(db(), 3, 312, 0.61)
    window.backend.latest = db().versions.latest()
    area = window.status
    why = AZURE_WHY if kind == "azure" else "no Azure OpenAI or OpenAI credentials found"
    model = "gpt-4o-mini-eastus-prod" if kind == "azure" else "SmolLM2-135M-Instruct"
    area.show_provider(SimpleNamespace(  # type: ignore[arg-type]
        provider_error=None, provider_kind=kind, provider_model=model,
        provider_reason=f"because {why}", provider_why=why))
    window._retrain_status(RetrainStatus(labels_since=1, every=5, running=False, queued=False))
    retrain = area.retrain_label.text()
    assert retrain.startswith("reward model v3 · CV accuracy") and "1/5 labels" in retrain
    for width, height in ((1400, 900), MIN_SIZE):
        for message in ("", RANKING):
            resize(window, width, height)
            window.statusBar().showMessage(message)
            settle(window)
            where = f"{kind} at {width} px, message {bool(message)}"
            provider = area.provider_label
            assert provider.shown_text() == provider.text() and model in provider.text(), where
            assert provider.text() in provider.toolTip()
            shown = area.retrain_label.shown_text()
            assert shown in area.retrain_label.forms() and "1/5 labels" in shown, (
                where, shown)
            assert area.retrain_label.toolTip() == retrain
            if width >= 1400:  # room for "… to next training" whole
                assert shown.endswith("1/5 labels to next training"), (where, shown)
            if not message:
                shown_why = area.provider_why.shown_text()
                assert shown_why in ("", *area.provider_why.forms()), (where, shown_why)
                assert why in area.provider_why.toolTip()
                if width >= 1400:
                    assert shown_why.endswith("are set" if kind == "azure" else "found"), where
            else:
                shown_message = area.message_label.shown_text()
                assert _whole_words(shown_message, message), (where, shown_message)
                assert area.message_label.toolTip() == message
            labels = (provider, area.retrain_label, area.provider_why, area.message_label)
            right = max(w.geometry().right() for w in labels if w.isVisible())
            assert right <= window.statusBar().width(), where
