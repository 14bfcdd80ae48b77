"""Settings from the window: the dialog offers the context size (saving it rebuilds the
provider) and says "Replies per turn" as the chat does; the replies, the provider and the
model also switch from the controls above the chat."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTabWidget,
    QWidget,
)

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.settings.dialog import SettingsDialog
from tests.ui.conftest import run, wait_until


def test_settings_offer_the_context_size_and_saving_it_rebuilds_the_provider(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    pytest.importorskip("xllamacpp")
    config.default_gguf_path()  # the built-in model is installed by make setup
    dialog = window.open_settings()
    labels = [w.text() for w in dialog.findChildren(QLabel)]
    assert "Context size (n_ctx)" in labels
    dialog.focus_field("n_ctx")  # what an error naming the setting opens
    assert dialog.focusWidget() is dialog.n_ctx and dialog.n_ctx.isVisible()
    assert dialog.n_ctx.value() == 2048
    assert dialog.n_ctx.minimum() >= 256 and dialog.n_ctx.maximum() <= 131072
    dialog.n_ctx.setValue(8192)
    dialog.accept()
    assert config.load_settings().n_ctx == 8192
    assert dialog.provider_changed  # a new context size needs a new llama.cpp context

    async def rebuilt() -> None:
        await wait_until(lambda: window.backend.session.provider is not None, 60, "the provider")

    run(loop, rebuilt())
    assert getattr(window.backend.session.provider, "n_ctx", None) == 8192
    # Out of range from a hand-edited settings file: clamped in the field, never lost.
    again = SettingsDialog(config.load_settings())
    assert again.n_ctx.value() == 8192
    again.deleteLater()


@pytest.mark.timeout(60)
def test_settings_says_replies_per_turn_as_the_chat_does(qtbot: object) -> None:
    from PySide6.QtWidgets import QLabel

    from rlhf_desktop.ui.settings.dialog import SettingsDialog

    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    texts = [label.text() for label in dialog.findChildren(QLabel)]
    assert "Replies per turn" in texts and "Candidates per turn" not in texts


@pytest.mark.timeout(60)
def test_training_on_pairs_against_cut_replies_is_a_setting_the_status_bar_points_to(
        qtbot: object) -> None:
    """With a small built-in model most replies are cut at max tokens, and the reward model
    leaves the pairs against them out: the status bar says how many it left out and the
    Settings dialog has the switch (a new user saw "trained on 6 pairs" after 29)."""
    from rlhf_desktop.domain import ModelVersion
    from rlhf_desktop.ui.backend import trained_text

    version = ModelVersion(version=2, path="", created_at=0.0, pairs=6, labels=2,
                           metrics={"cut_pairs_left_out": 23})
    assert trained_text(version) == "trained on 6 pairs (23 against cut replies left out: " \
        "Settings)"
    # the switch on, the version in use still without them: no pointing back to Settings
    assert "Settings" not in trained_text(version, use_cut=True)
    assert "not better on pairs it never saw" in trained_text(version, use_cut=True)
    assert trained_text(ModelVersion(version=1, path="", created_at=0.0, pairs=6, labels=2,
                                     metrics={})) == "trained on 6 pairs"
    config.save_settings(Settings())
    dialog = SettingsDialog(config.load_settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    assert not dialog.train_on_cut.isChecked()
    assert "cut at max tokens" in dialog.train_on_cut.text()
    dialog.train_on_cut.setChecked(True)
    dialog.accept()
    assert config.load_settings().train_on_cut_pairs


def test_replies_provider_and_model_switch_from_above_the_chat(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    controls = window.controls
    assert controls.isVisible() and controls.replies.isVisible()
    assert (controls.replies.minimum(), controls.replies.maximum()) in ((2, 8), (2, 9))
    controls.replies.setValue(6)
    assert config.load_settings().candidates_per_turn == 6
    assert window.backend.sampling_params().n == 6
    dialog = window.open_settings()
    assert dialog.candidates.value() == 6  # one path: the Settings dialog sees it
    dialog.reject()

    # A compatible server by the provider menu; building it connects to nothing.
    settings = config.load_settings()
    settings.openai_base_url = "http://127.0.0.1:9/v1"
    settings.openai_model = "first-model"
    config.save_settings(settings)
    window.backend.apply_settings(settings)
    window._sync_controls()
    index = controls.provider.findData("compatible")
    controls.provider.setCurrentIndex(index)
    controls.provider.activated.emit(index)
    assert config.load_settings().provider == "compatible"

    async def switched(kind: str, model: str) -> None:
        await wait_until(lambda: window.backend.provider_kind == kind
                         and window.backend.provider_kind != ""
                         and window.backend.provider_model == model, 30, f"{kind} {model}")

    run(loop, switched("compatible", "first-model"))
    assert controls.model.text() == "first-model" and not controls.model.isReadOnly()
    assert "chosen explicitly (compatible)" in window.provider_why.text()
    controls.model.setFocus()
    controls.model.selectAll()
    QTest.keyClicks(controls.model, "second-model")
    QTest.keyClick(controls.model, Qt.Key.Key_Return)
    assert config.load_settings().openai_model == "second-model"
    run(loop, switched("compatible", "second-model"))
    assert window.provider_label.text().endswith("second-model")


def widget_texts(root: QWidget) -> list[str]:
    """Every text a widget of ``root`` shows or offers: labels, fields and their placeholder,
    tooltips, buttons, combo items, tab titles, accessible names."""
    texts: list[str] = []
    for w in [root, *root.findChildren(QWidget)]:
        texts += [w.toolTip(), w.statusTip(), w.whatsThis(), w.accessibleName(),
                  w.accessibleDescription(), w.windowTitle()]
        if isinstance(w, (QLabel, QAbstractButton)):
            texts.append(w.text())
        if isinstance(w, QLineEdit):
            texts += [w.text(), w.displayText(), w.placeholderText()]
        if isinstance(w, QPlainTextEdit):
            texts.append(w.toPlainText())
        if isinstance(w, QComboBox):
            texts += [w.itemText(i) for i in range(w.count())]
        if isinstance(w, QTabWidget):
            texts += [w.tabText(i) for i in range(w.count())]
    return texts


@pytest.mark.timeout(60)
def test_settings_show_the_azure_values_dotenv_sets_and_never_the_key(
        qtbot: object, data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-dotenv-Q7w9Zr2xKe41"
    (data_home / ".env").write_text(
        "AZURE_OPENAI_ENDPOINT=https://mine.openai.azure.com\n"
        "AZURE_OPENAI_DEPLOYMENT_NAME=gpt-4o-mini\n"
        "AZURE_OPENAI_API_VERSION=2025-01-01-preview\n"
        f"AZURE_OPENAI_API_KEY={key}\n", encoding="utf-8")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the environment's
    config.reload_env_files()
    stored = replace(Settings(), azure_deployment="stored-deployment")
    config.save_settings(stored)

    dialog = SettingsDialog(config.load_settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    shown = {"endpoint": dialog.azure_endpoint, "deployment": dialog.azure_deployment,
             "version": dialog.azure_version}
    assert {k: f.text() for k, f in shown.items()} == {
        "endpoint": "https://mine.openai.azure.com", "deployment": "gpt-4o-mini",
        "version": "2025-01-01-preview"}  # the values in use, not empty fields
    assert all(f.isReadOnly() for f in shown.values())
    assert "AZURE_OPENAI_ENDPOINT in .env wins" in dialog.azure_endpoint.toolTip()
    labels = [w.text() for w in dialog.findChildren(QLabel)]
    assert labels.count("from .env") == 3 and labels.count("from the environment") == 1
    assert dialog.openai_base_url.text() == "http://127.0.0.1:9/v1"
    assert not dialog.openai_model.isReadOnly()  # no variable: the setting, editable
    assert dialog.azure_key.text() == ""
    assert dialog.azure_key.placeholderText().startswith("•••• set in .env")
    assert dialog.openai_key.placeholderText() == "not set"
    texts = widget_texts(dialog)
    assert "https://mine.openai.azure.com" in texts  # the scan reads the fields
    assert not [t for t in texts if key in t or key[-8:] in t]

    # Saving keeps what is stored: the variables are shown, never written to settings.json.
    dialog.save()
    saved = config.load_settings()
    assert (saved.azure_endpoint, saved.azure_deployment, saved.azure_api_version,
            saved.openai_base_url) == ("", "stored-deployment", stored.azure_api_version, "")
    assert not dialog.provider_changed
    assert key not in config.settings_path().read_text(encoding="utf-8")
