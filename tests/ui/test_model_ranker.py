"""The model page's ranker panel (ui/model/ranker.py): the rankers in the data folder, "Use as
ranker" / "Use the tiny model" (saved in the settings, applied), and a comparison that fails
with a clear message instead of spinning. The comparison of a real ranker with the tiny model
is in tests/tune/test_reward_trainer.py (it needs a trained model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.services.ranking.evaluation import RankerEvalService
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.model.ranker import RankerPanel
from tests.fakes import HashEmbedder
from tests.helpers import write_jsonl
from tests.ui.conftest import run, wait_until

pytestmark = pytest.mark.timeout(120)


def ranker_folder(root: Path, name: str, accuracy: float) -> Path:
    folder = root / "rankers" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForSequenceClassification"], "num_labels": 1}))
    (folder / "ranker.json").write_text(json.dumps(
        {"base": {"name": "SmolLM2-135M-Instruct.Q4_1.gguf"}, "pairs": {"used": 240},
         "steps": 30, "held_out": {"pairs": 60, "accuracy": accuracy}, "max_length": 128}))
    return folder


class Holder:
    def __init__(self) -> None:
        self.settings = Settings()
        self.applied: list[Settings] = []

    def get(self) -> Settings:
        return self.settings

    def apply(self, settings: Settings) -> None:
        self.settings = settings
        self.applied.append(settings)


@pytest.fixture
def panel(qtbot, loop, data_home: Path) -> Iterator[tuple[RankerPanel, Holder, RewardService]]:
    backend = Backend()
    holder = Holder()
    rewards = RewardService(embedder=HashEmbedder())  # type: ignore[arg-type]
    widget = RankerPanel(backend, RankerEvalService(rewards, holder.get, holder.apply))
    qtbot.addWidget(widget)
    widget.resize(800, 300)
    widget.show()
    yield widget, holder, rewards
    run(loop, backend.aclose())


def click(qtbot, button) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_no_ranker_yet_says_how_to_make_one(panel) -> None:
    widget, _holder, _rewards = panel
    assert widget.choice.currentText().startswith("No ranker yet: train one with method: reward")
    assert not widget.use_button.isEnabled() and not widget.compare_button.isEnabled()
    assert not widget.tiny_button.isEnabled()
    assert widget.status.text() == "The tiny model ranks the replies."


def test_use_as_ranker_and_back_to_the_tiny_model(qtbot, panel, data_home: Path) -> None:
    widget, holder, rewards = panel
    ranker_folder(data_home, "r0001", 0.64)
    newest = ranker_folder(data_home, "r0002", 0.71)
    widget.refresh()
    assert [widget.choice.itemText(i) for i in range(widget.choice.count())] == [
        "r0002 · SmolLM2-135M-Instruct.Q4_1.gguf · 240 pairs · held out 71.0 % on 60 pairs",
        "r0001 · SmolLM2-135M-Instruct.Q4_1.gguf · 240 pairs · held out 64.0 % on 60 pairs"]

    click(qtbot, widget.use_button)
    assert config.load_settings().ranker == str(newest.resolve())
    assert holder.applied[-1].ranker == str(newest.resolve())
    assert rewards.ranker.wanted == str(newest.resolve())
    assert widget.choice.currentText().endswith(" · in use")
    assert widget.status.text() == ("The transformers ranker r0002 ranks the replies (it loads "
                                    "with the next turn).")
    assert widget.result.text().startswith("This ranker ranks from the next turn on")

    click(qtbot, widget.tiny_button)
    assert config.load_settings().ranker == "" and rewards.ranker.wanted == ""
    assert widget.status.text() == "The tiny model ranks the replies."
    assert not widget.tiny_button.isEnabled()


def test_a_folder_that_cannot_load_is_reported_and_nothing_changes(qtbot, loop, panel,
                                                                   data_home: Path) -> None:
    widget, holder, _rewards = panel
    ranker_folder(data_home, "r0001", 0.6)  # config.json but no weights
    widget.refresh()
    test_file = write_jsonl(data_home / "test.jsonl", [
        {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}])
    widget.test_file.setText(str(test_file))
    click(qtbot, widget.compare_button)
    assert widget.progress.isVisible() and not widget.compare_button.isEnabled()
    run(loop, wait_until(lambda: not widget.comparing, 100, "the comparison"))
    assert "could not be loaded as a reward model" in widget.result.text()
    assert not widget.progress.isVisible() and widget.compare_button.isEnabled()
    assert holder.applied == [] and config.load_settings().ranker == ""

    widget.test_file.setText(str(data_home / "missing.jsonl"))
    click(qtbot, widget.compare_button)
    run(loop, wait_until(lambda: not widget.comparing, 30, "the comparison"))
    assert widget.result.text().startswith("The test file ")
    assert "could not be read" in widget.result.text()


def test_settings_offer_the_rankers_and_the_session_follows_the_choice(
        qtbot, loop, data_home: Path) -> None:
    """Settings → Ranker lists the data folder's transformers rankers beside the tiny model;
    saving one makes the session's rank worker use it, and choosing the tiny model again
    switches back."""
    from tests.ui.helpers import window_for

    folder = ranker_folder(data_home, "r0001", 0.71)
    window = window_for(qtbot)
    dialog = window.open_settings()
    labels = [dialog.ranker.itemText(i) for i in range(dialog.ranker.count())]
    assert labels[0].startswith("the tiny reward model")
    assert labels[1] == "r0001 · held-out accuracy 71.0 % · SmolLM2-135M-Instruct.Q4_1.gguf"
    dialog.ranker.setCurrentIndex(1)
    dialog.accept()
    assert config.load_settings().ranker == str(folder)
    rewards = window.backend.session._rewards
    assert rewards.ranker.wanted == str(folder)
    dialog = window.open_settings()
    assert dialog.ranker.currentIndex() == 1  # the choice shows when the dialog opens again
    dialog.ranker.setCurrentIndex(0)
    dialog.accept()
    assert config.load_settings().ranker == "" and rewards.ranker.wanted == ""
    run(loop, window.backend.aclose())
