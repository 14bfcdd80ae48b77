"""The window's Export… offers everything ``rlhf-desktop export`` writes (OpenAI DPO,
rankings, labels, Parquet, the dataset folder with its card) through the same service
functions, says what to install when Parquet cannot be written, and the dataset view notes a
pair whose rejected reply was cut. On the cards: identical replies say so, and "✗ Bad" is
not the green of "Your pick"."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.providers.openai_dpo import validate_openai_dpo
from rlhf_desktop.services.datasets.export_folder import ALL_FORMATS
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.dataset.page import EXPORTS, FOLDER, NOTE_COLUMN, DatasetView
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.theme import LIGHT, stylesheet
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import db

pytestmark = pytest.mark.timeout(120)
CUT = ("Gravity is the force by which a planet or other body draws objects toward its "
       "centre. It keeps the")


def stored_turn(repo: Repository, texts: list[str], finish: list[str] | None = None) -> Turn:
    conv = repo.conversations.create("test")
    finish = finish or ["stop"] * len(texts)
    return repo.conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", "Explain gravity")],
        provider="azure", model="gpt-test", params=SamplingParams(n=len(texts)),
        candidates=[Candidate(index=i, text=t, finish_reason=f)
                    for i, (t, f) in enumerate(zip(texts, finish, strict=True))]))


def labeled_data(repo: Repository) -> None:
    """A pick against a whole and a cut reply, a ranking, a tie and an all-bad flag."""
    labeling = LabelingService(repo)
    turn = stored_turn(repo, ["Gravity pulls masses together.", CUT, "Things fall."],
                       ["stop", "length", "stop"])
    labeling.pick(turn, turn.candidates[0].id or 0)
    ranked = stored_turn(repo, ["Mass attracts mass.", "It is magic.", "Stuff drops."])
    labeling.rank(ranked, [c.id or 0 for c in ranked.candidates])
    tied = stored_turn(repo, ["Both fine.", "Also fine."])
    labeling.tie(tied, [c.id or 0 for c in tied.candidates])
    bad = stored_turn(repo, ["Blorp.", "Zzz."])
    labeling.all_bad(bad)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def meta(record: dict[str, object]) -> dict[str, object]:
    found = record["metadata"]
    assert isinstance(found, dict)
    return found


def test_the_window_offers_every_format_the_command_line_writes() -> None:
    offered = {fmt for fmt, _suffix, _parquet in EXPORTS.values()}
    assert offered >= {*ALL_FORMATS, "labels", FOLDER}
    assert any(parquet for _fmt, _suffix, parquet in EXPORTS.values())
    for name in EXPORTS:  # each a filter Qt can parse: "words (*.ext)"
        assert re.fullmatch(r"[^()]+ \(\*(\.\w+)?\)", name), name


def test_every_export_of_the_window_writes_its_file(loop: asyncio.AbstractEventLoop,
                                                    qtbot: object, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend(provider=None)
    labeled_data(db())
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda _p, _t, text: warnings.append(text)))
    pairs = db().pairs.count()  # 2 of the pick + 3 of the ranking
    assert pairs == 5
    for fmt, rows in (("jsonl", 5), ("trl", 5), ("trl-conversational", 5), ("hh", 5),
                      ("openai-dpo", 5), ("ranking", 1), ("labels", 4)):
        out = tmp_path / f"{fmt}.jsonl"
        assert run(loop, view.export(fmt, str(out))) == rows, (fmt, warnings)
        assert len(lines(out)) == rows
        if fmt == "openai-dpo":
            for record in lines(out):
                validate_openai_dpo(record)
    assert run(loop, view.export("csv", str(tmp_path / "pairs.csv"))) == 5
    kinds = {r["label_kind"] for r in lines(tmp_path / "labels.jsonl")}
    assert kinds == {"pick", "ranking", "tie", "all_bad"}
    cut = [meta(r)["rejected_cut"] for r in lines(tmp_path / "jsonl.jsonl")]
    assert sorted(cut) == [False, False, False, False, True]
    folder = tmp_path / "dataset"
    assert run(loop, view.export(FOLDER, str(folder))) == 5
    assert (folder / "README.md").is_file() and len(lines(folder / "openai-dpo.jsonl")) == 5
    assert len(lines(folder / "labels.jsonl")) == 4 and len(lines(folder / "ranking.jsonl")) == 1
    assert "rejected_cut" in (folder / "README.md").read_text(encoding="utf-8")
    assert warnings == [] and "to " + str(folder) in view.count_label.text()
    run(loop, backend.aclose())


def test_parquet_without_datasets_says_what_to_install_and_writes_nothing(
        loop: asyncio.AbstractEventLoop, qtbot: object, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend(provider=None)
    labeled_data(db())
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda _p, _t, text: warnings.append(text)))
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets → ImportError
    out = tmp_path / "pairs.parquet"
    assert run(loop, view.export("jsonl", str(out), True)) == 0
    assert len(warnings) == 1 and "pip install datasets" in warnings[0]
    assert view.last_export_error == warnings[0] and not out.exists()
    assert view.export_button.isEnabled()
    run(loop, backend.aclose())


def test_the_export_dialog_writes_the_folder_chosen_by_its_filter(
        loop: asyncio.AbstractEventLoop, qtbot: object, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend(provider=None)
    labeled_data(db())
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    folder_filter = next(k for k, v in EXPORTS.items() if v[0] == FOLDER)
    target = tmp_path / "my-dataset"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *_a: (str(target), folder_filter)))
    view.export_dialog()
    run(loop, wait_until(lambda: (target / "README.md").exists()
                         and view.export_button.isEnabled(), 60, "the folder export"))
    assert len(lines(target / "pairs.jsonl")) == 5
    run(loop, backend.aclose())


def test_the_dataset_view_notes_a_pair_whose_rejected_reply_was_cut(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    backend = Backend(provider=None)
    labeled_data(db())
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    model = view.model
    notes = {model.data(model.index(r, 2)): model.data(model.index(r, NOTE_COLUMN))
             for r in range(model.rowCount())}
    assert notes[CUT] == "rejected cut at max tokens"
    assert sum(1 for n in notes.values() if n) == 1
    run(loop, backend.aclose())


def shown_widget(qtbot: object, turn: Turn) -> TurnWidget:
    widget = TurnWidget("Capital of Australia?", len(turn.candidates), MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.resize(1000, 700)
    widget.show()
    widget.set_turn(turn)
    return widget


def test_identical_replies_say_so_on_their_cards(qtbot: object) -> None:
    repo = Repository.open()
    turn = stored_turn(repo, ["Canberra.", "canberra", "Sydney", "Canberra"])
    widget = shown_widget(qtbot, turn)
    widget.update_status()
    notes = {card.index: card.same_note.text() for card in widget.cards.values()
             if card.same_note.isVisible()}
    assert set(notes) == {0, 1, 3}
    assert notes[1] == "= same as Reply 1 and Reply 4 (a tie: no preference pair)"


def test_bad_badges_are_not_the_green_of_your_pick(qtbot: object) -> None:
    repo = Repository.open()
    turn = stored_turn(repo, ["Blorp.", "Zzz."])
    LabelingService(repo).all_bad(turn)
    widget = shown_widget(qtbot, turn)
    widget.update_status()
    badges = [card.state_badge for card in widget.cards.values()]
    assert [(b.text(), b.property("badge")) for b in badges] == [("✗ Bad", "bad")] * 2
    assert "your question stays in the conversation with no reply" in widget.status.text()
    sheet = stylesheet(LIGHT)
    bad = re.search(r'QLabel\[badge="bad"\] \{ background: (#\w+)', sheet)
    pick = re.search(r'QLabel\[badge="state"\] \{ background: (#\w+)', sheet)
    assert bad and pick and bad.group(1) != pick.group(1) == LIGHT.chosen
    LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
    widget.set_turn(turn)
    widget.mark_pick(turn.chosen_candidate_id)
    chosen = widget.cards[0].state_badge
    assert (chosen.text(), chosen.property("badge")) == ("✓ Your pick", "state")



@pytest.mark.timeout(60)
def test_export_dialog_starts_in_the_home_folder(qtbot: object,
                                                 loop: asyncio.AbstractEventLoop,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the working folder (the project checkout, or / for a menu launch)."""
    from PySide6.QtWidgets import QFileDialog

    from rlhf_desktop.ui.backend import Backend
    from rlhf_desktop.ui.dataset.page import DatasetView
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
