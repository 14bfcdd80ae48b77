"""Each label kind from the real window (keys and buttons, Azure-protocol server over real
sockets) through the real database to every export format: the six pair formats, the
ranking file, the labels file, Parquet, and the dataset card; the TRL exports reloaded with
``datasets.load_dataset`` against TRL's column contract, the OpenAI DPO lines against the
SDK's types. A skip is no label: nothing is exported for it."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PySide6.QtCore import Qt

from rlhf_desktop.core.formats import parse_record
from rlhf_desktop.providers.openai_dpo import validate_openai_dpo
from rlhf_desktop.services.datasets.export_folder import ALL_FORMATS, FolderExport, export_folder
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.main_window import MainWindow
from tests.azure_server import AzureServer
from tests.ui.conftest import run
from tests.ui.helpers import activate, azure_env, db, press, window_for
from tests.ui.test_label_kinds_ui import finished_turn

KEY = "sk-azure-SECRET-e2e-export-41c8"
ALT = Qt.KeyboardModifier.AltModifier
EDITED = "Hello! My own, better reply."
PAIR_FORMATS = ("jsonl", "trl", "trl-conversational", "hh", "openai-dpo", "csv")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureServer]:
    """The Azure-protocol server, with the app's environment pointing at it."""
    with azure_env(monkeypatch, KEY) as srv:
        yield srv


def label_from_the_window(window: MainWindow, widget: TurnWidget, kind: str) -> None:
    """Give the turn a label of ``kind`` the way a user does (keys, buttons, the dialog)."""
    if kind == "pick":
        press(window, Qt.Key.Key_2, ALT)  # the card shown second
    elif kind == "tie":
        for key in (Qt.Key.Key_T, Qt.Key.Key_1, Qt.Key.Key_3, Qt.Key.Key_T):
            press(window, key, ALT)
    elif kind == "all_bad":
        press(window, Qt.Key.Key_B, ALT)
    elif kind == "skip":
        press(window, Qt.Key.Key_S, ALT)
    elif kind == "ranking":  # Alt+R, then the cards best first: saved with the last one
        for key in (Qt.Key.Key_R, Qt.Key.Key_3, Qt.Key.Key_1, Qt.Key.Key_2):
            press(window, key, ALT)
    elif kind == "edit":
        card = widget.card_at(1)
        assert card is not None
        card.edit_button.click()  # type: ignore[attr-defined]
        dialog = window.chat.edit_dialog
        assert dialog is not None
        dialog.editor.setPlainText(EDITED)
        dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
        assert window.chat.edit_dialog is None


def expected_pairs(kind: str, shown: list[str]) -> list[tuple[str, str]]:
    """(chosen, rejected) of each pair the label makes; ``shown``: texts by display place."""
    if kind == "pick":
        return [(shown[1], shown[0]), (shown[1], shown[2])]
    if kind == "edit":
        return [(EDITED, text) for text in shown]
    if kind == "ranking":
        best = [shown[2], shown[0], shown[1]]
        return [(best[i], best[j]) for i in range(3) for j in range(i + 1, 3)]
    return []  # tie, all bad: a label without pairs; skip: no label


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def pairs_of(fmt: str, path: Path) -> list[tuple[str, str]]:
    """The (chosen, rejected) texts of a pair file, read back by the app's own importer."""
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return [(r["chosen"], r["rejected"]) for r in csv.DictReader(fh)]
    return [(p.chosen, p.rejected) for p in map(parse_record, lines(path))]


def metadata_of(fmt: str, path: Path) -> list[dict[str, Any]]:
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return [json.loads(r["metadata"]) for r in csv.DictReader(fh)]
    return [line["metadata"] for line in lines(path)]


def assert_trl_contract(path: Path, conversational: bool, rows: int, cache: Path) -> None:
    """TRL's preference-dataset columns: prompt/chosen/rejected, plain strings (standard)
    or lists of {role, content} messages (conversational), reloaded with datasets."""
    from datasets import load_dataset
    from trl.data_utils import is_conversational, unpair_preference_dataset

    ds = load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    assert ds.num_rows == rows and ds.column_names == ["prompt", "chosen", "rejected"]
    for row in ds:
        assert is_conversational(row) == conversational
        for column in ("prompt", "chosen", "rejected"):
            if conversational:
                assert isinstance(row[column], list) and all(
                    set(m) == {"role", "content"} and isinstance(m["content"], str)
                    for m in row[column])
            else:
                assert isinstance(row[column], str) and row[column]
        if conversational:
            assert row["prompt"][-1]["role"] == "user"
            assert [m["role"] for m in row["chosen"]] == ["assistant"]
        else:
            assert row["prompt"].endswith("\n\nAssistant:") and row["chosen"].startswith(" ")
    assert unpair_preference_dataset(ds).num_rows == 2 * rows


def assert_parquet_matches(json_export: FolderExport, parquet_export: FolderExport,
                           cache: Path) -> None:
    """The Parquet files hold the rows of the JSONL ones (csv is not written as Parquet)."""
    import pyarrow.parquet as pq
    from datasets import load_dataset

    for f in json_export.files:
        if f.path.suffix == ".csv":
            assert f.config not in {p.config for p in parquet_export.files}
            continue
        parquet = parquet_export.path(f.config, f.split)
        assert parquet.suffix == ".parquet" and pq.read_metadata(parquet).num_rows == f.rows
        if f.rows:
            as_json = load_dataset("json", data_files=str(f.path), split="train",
                                   cache_dir=str(cache)).to_list()
            as_parquet = load_dataset("parquet", data_files=str(parquet), split="train",
                                      cache_dir=str(cache)).to_list()
            assert as_parquet == as_json, f.config


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["pick", "tie", "all_bad", "edit", "ranking", "skip"])
def test_label_kind_from_the_window_to_every_export_format(
        kind: str, loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer,
        tmp_path: Path) -> None:
    window = window_for(qtbot, candidates_per_turn=3, max_tokens=32)
    shown: list[str] = []

    async def flow() -> None:
        await window.start()
        widget = await finished_turn(window, f"Say hello ({kind})")
        shown.extend(c.candidate.text for c in widget.ordered_cards()
                     if c.candidate is not None)
        assert len(shown) == 3 and all(shown)
        await activate(window)
        label_from_the_window(window, widget, kind)

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())

    repo = db()
    labeled = kind != "skip"
    assert repo.labels.kinds() == ({kind: 1} if labeled else {})
    expected = expected_pairs(kind, shown)
    done = export_folder(repo, tmp_path / "json", ALL_FORMATS)
    assert [(f.config, f.rows) for f in done.files] == [
        ("pairs", len(expected)), ("trl", len(expected)), ("trl-conversational", len(expected)),
        ("hh", len(expected)), ("openai-dpo", len(expected)), ("pairs-csv", len(expected)),
        ("ranking", int(kind == "ranking")), ("labels", int(labeled))]

    # the six pair formats: the same pairs, provenance where the format carries it
    for fmt in PAIR_FORMATS:
        path = done.path(fmt)
        assert sorted(pairs_of(fmt, path)) == sorted(expected), fmt
        if fmt in ("jsonl", "hh", "csv"):
            weight = 2 / 3 if kind == "ranking" else 1.0
            for meta in metadata_of(fmt, path):
                assert meta["label_kind"] == kind and meta["provider"] == "azure"
                assert meta["weight"] == pytest.approx(weight)
    for line in lines(done.path("openai-dpo")):
        validate_openai_dpo(line)
    if expected:
        cache = tmp_path / "hf-cache"
        assert_trl_contract(done.path("trl"), False, len(expected), cache)
        assert_trl_contract(done.path("trl-conversational"), True, len(expected), cache)

    # the labels file: one line per label, ties and all-bad flags included
    records = lines(done.path("labels"))
    assert [r["label_kind"] for r in records] == ([kind] if labeled else [])
    if labeled:
        record = records[0]
        texts = record["completions"]
        assert sorted(texts) == sorted(shown)
        if kind == "pick":
            assert texts[record["chosen"]] == shown[1]
        elif kind == "tie":
            assert sorted(texts[i] for i in record["tied"]) == sorted([shown[0], shown[2]])
        elif kind == "all_bad":
            assert record["all_bad"] is True and record["chosen"] is None
        elif kind == "edit":
            assert record["edited"] == EDITED
            assert texts[record["metadata"]["edited_from"]] == shown[1]
        elif kind == "ranking":
            assert [texts[i] for i in record["ranking"]] == [shown[2], shown[0], shown[1]]
        assert record["metadata"]["positions"] is not None

    # the ranking file: rankings only, indices into completions best first
    rankings = lines(done.path("ranking"))
    if kind == "ranking":
        (ranking,) = rankings
        assert [ranking["completions"][i] for i in ranking["ranking"]] == [
            shown[2], shown[0], shown[1]]
        assert ranking["unranked"] == []
    else:
        assert rankings == []

    # Parquet: the same rows; the dataset card counts them and holds no key
    parquet = export_folder(repo, tmp_path / "parquet", ALL_FORMATS, parquet=True)
    assert_parquet_matches(done, parquet, tmp_path / "hf-cache")
    card = done.card.read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("\n---\n", 1)[0].removeprefix("---\n"))
    assert meta["rlhf_desktop"]["pairs"] == len(expected)
    assert meta["rlhf_desktop"]["labels_by_kind"] == ({kind: 1} if labeled else {})
    assert KEY not in card and KEY not in parquet.card.read_text(encoding="utf-8")
