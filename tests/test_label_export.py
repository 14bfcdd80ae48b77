"""Every label kind through the database to every export format: metadata where it is
loadable, TRL's column contract unchanged, the per-turn labels file, the split by
conversation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlhf_desktop.services import datasets
from rlhf_desktop.services.formats import EXPORT_FORMATS
from rlhf_desktop.services.label_export import export_labels, label_records, split_export
from rlhf_desktop.services.labeling import LabelingService
from rlhf_desktop.storage.labels import METADATA_KEYS
from rlhf_desktop.storage.repo import Repository
from tests.helpers import make_turn


def labeled_repo() -> Repository:
    """One turn per label kind (pick in a blind turn, tie, all bad, edit, skip)."""
    repo = Repository.open()
    labeling = LabelingService(repo)
    turns = [make_turn(repo, ["a1", "a2", "a3"], prompt=f"q{i}") for i in range(5)]
    for turn in turns:
        for cand in turn.candidates:
            cand.score, cand.model_version, cand.position = cand.index / 10, 2, cand.index
    turns[0].blind = True
    labeling.record_display(turns[0])
    labeling.pick(turns[0], turns[0].candidates[1].id or 0)
    labeling.tie(turns[1], [turns[1].candidates[0].id or 0, turns[1].candidates[2].id or 0])
    labeling.all_bad(turns[2])
    labeling.edit(turns[3], turns[3].candidates[2].id or 0, "a3, rewritten")
    labeling.skip(turns[4])
    return repo


def test_labels_file_holds_every_kind_with_ties_and_all_bad_flags(tmp_path: Path) -> None:
    repo = labeled_repo()
    records = list(label_records(repo))
    assert [r["label_kind"] for r in records] == ["pick", "tie", "all_bad", "edit"]
    pick, tie, bad, edit = records
    assert pick["chosen"] == 1 and pick["metadata"]["blind"] is True
    assert pick["metadata"]["positions"] == [0, 1, 2]
    assert pick["metadata"]["scores"] == [0.0, 0.1, 0.2]
    assert pick["completions"] == ["a1", "a2", "a3"]
    assert tie["tied"] == [0, 2] and tie["chosen"] == 0 and not tie["all_bad"]
    assert bad["all_bad"] and bad["chosen"] is None
    assert edit["edited"] == "a3, rewritten" and edit["metadata"]["edited_from"] == 2
    assert edit["completions"] == ["a1", "a2", "a3"]  # the rewrite is not a completion
    out = tmp_path / "labels.jsonl"
    assert export_labels(repo, out) == 4
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(out), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 4 and ds[2]["all_bad"] is True


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_every_format_exports_the_pairs_of_picks_and_edits_only(tmp_path: Path,
                                                                fmt: str) -> None:
    from datasets import load_dataset

    repo = labeled_repo()
    out = tmp_path / ("export.csv" if fmt == "csv" else "export.jsonl")
    assert datasets.export_to_file(repo, fmt, out) == 5  # pick: 2, edit: 3; tie, all bad: 0
    ds = load_dataset("csv" if fmt == "csv" else "json", data_files=str(out), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 5
    if fmt in ("jsonl", "hh"):
        kinds = [row["metadata"]["label_kind"] for row in ds]
        assert kinds == ["pick", "pick", "edit", "edit", "edit"]
        assert set(ds[0]["metadata"]) == set(METADATA_KEYS)
        assert ds[0]["metadata"]["blind"] is True and ds[0]["metadata"]["chosen_position"] == 1
        assert ds[2]["metadata"]["chosen_source"] == "edit"
    elif fmt == "csv":
        with out.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [json.loads(r["metadata"])["label_kind"] for r in rows] == [
            "pick", "pick", "edit", "edit", "edit"]
    else:
        assert "metadata" not in ds.column_names


@pytest.mark.parametrize("fmt", ["trl", "trl-conversational"])
def test_trl_exports_keep_trls_column_contract(tmp_path: Path, fmt: str) -> None:
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_extract_prompt, unpair_preference_dataset

    repo = labeled_repo()
    out = tmp_path / "export.jsonl"
    datasets.export_to_file(repo, fmt, out)
    ds = load_dataset("json", data_files=str(out), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert is_conversational(ds[0]) == (fmt == "trl-conversational")
    assert maybe_extract_prompt(ds[0]) == ds[0]  # an explicit prompt: nothing to extract
    unpaired = unpair_preference_dataset(ds)
    assert unpaired.num_rows == 10 and set(unpaired.column_names) == {"prompt", "completion",
                                                                     "label"}
    chosen = {json.dumps(r["completion"]) for r in unpaired if r["label"]}
    assert any("a3, rewritten" in c for c in chosen)


def test_split_keeps_each_conversation_on_one_side(tmp_path: Path) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    conversations = []
    for i in range(40):
        first = make_turn(repo, ["x", "y"], prompt=f"c{i}")
        second = make_turn(repo, ["u", "v"], prompt=f"c{i} again")
        repo.conn.execute("UPDATE turns SET conversation_id = ? WHERE id = ?",
                          (first.conversation_id, second.id))
        second.conversation_id = first.conversation_id
        for turn in (first, second):
            labeling.pick(turn, turn.candidates[0].id or 0)
        conversations.append(first.conversation_id)
    counts = split_export(repo, "trl-conversational", tmp_path / "out", test_share=0.3)
    assert counts.train + counts.test == 80 and counts.test > 0 and counts.train > 0
    side = {}
    for name, path in (("train", counts.train_path), ("test", counts.test_path)):
        for line in path.read_text(encoding="utf-8").splitlines():
            prompt = json.loads(line)["prompt"][-1]["content"].removesuffix(" again")
            assert side.setdefault(prompt, name) == name, f"{prompt} leaked across"
    assert len(side) == 40
    again = split_export(repo, "trl-conversational", tmp_path / "again", test_share=0.3)
    assert again.test_path.read_text() == counts.test_path.read_text()  # stable
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_export(repo, "jsonl", tmp_path / "bad", test_share=1.5)


def test_cli_writes_the_split_and_the_labels_file(data_home, tmp_path):
    """`rlhf-desktop export --split DIR --labels FILE`: the real command line."""
    import json
    import subprocess
    import sys

    from rlhf_desktop.domain import Message, PreferencePair
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    repo.add_pairs([PreferencePair(prompt=(Message("user", f"q{k}"),), chosen=f"good {k}",
                                   rejected=f"bad {k}") for k in range(40)])
    repo.close()
    out, labels = tmp_path / "split", tmp_path / "labels.jsonl"
    proc = subprocess.run([sys.executable, "-m", "rlhf_desktop", "export", "--format", "trl",
                           "--split", str(out), "--test-share", "0.25", "--labels",
                           str(labels)], capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr
    train = (out / "train.jsonl").read_text().splitlines()
    test = (out / "test.jsonl").read_text().splitlines()
    assert len(train) + len(test) == 40 and train and test
    assert {json.loads(line)["chosen"] for line in train}.isdisjoint(
        json.loads(line)["chosen"] for line in test)
    assert "split by conversation" in proc.stderr and labels.exists()
    bad = subprocess.run([sys.executable, "-m", "rlhf_desktop", "export", "--split", str(out),
                          "--test-share", "2"], capture_output=True, text=True, timeout=110)
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr
