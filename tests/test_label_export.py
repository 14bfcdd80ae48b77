"""Every label kind through the database to every export format: metadata where it is
loadable, TRL's column contract unchanged, the per-turn labels file, the ranking file, the
split by conversation, Parquet, the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlhf_desktop.core.formats import EXPORT_FORMATS
from rlhf_desktop.services.datasets import pairs as datasets
from rlhf_desktop.services.datasets.export_folder import ExportError, export_folder, split_export
from rlhf_desktop.services.labels.export import export_labels, label_records, ranking_records
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.storage.provenance import METADATA_KEYS
from rlhf_desktop.storage.repo import Repository
from tests.helpers import make_turn


def labeled_repo() -> Repository:
    """One turn per label kind (pick in a blind turn, tie, all bad, edit, skip, ranking)."""
    repo = Repository.open()
    labeling = LabelingService(repo)
    turns = [make_turn(repo, ["a1", "a2", "a3"], prompt=f"q{i}") for i in range(6)]
    for turn in turns:
        for cand in turn.candidates:
            cand.score, cand.model_version, cand.position = cand.index / 10, 2, cand.index
    turns[0].blind = True
    labeling.record_display(turns[0])
    labeling.pick(turns[0], turns[0].candidates[1].id or 0)
    labeling.tie(turns[1], [turns[1].candidates[0].id or 0, turns[1].candidates[2].id or 0])
    labeling.all_bad(turns[2])
    bad = repo.labels.last()
    assert bad is not None and bad.id is not None
    repo.labels.set_reason(bad.id, "none of these are jokes")  # "What was wrong?"
    labeling.edit(turns[3], turns[3].candidates[2].id or 0, "a3, rewritten")
    labeling.skip(turns[4])
    ranked = turns[5].candidates
    labeling.rank(turns[5], [ranked[2].id or 0, ranked[0].id or 0, ranked[1].id or 0])
    return repo


def test_labels_file_holds_every_kind_with_ties_and_all_bad_flags(tmp_path: Path) -> None:
    repo = labeled_repo()
    records = list(label_records(repo))
    assert [r["label_kind"] for r in records] == ["pick", "tie", "all_bad", "edit", "ranking"]
    pick, tie, bad, edit, ranking = records
    assert pick["chosen"] == 1 and pick["metadata"]["blind"] is True
    assert pick["metadata"]["positions"] == [0, 1, 2]
    assert pick["metadata"]["scores"] == [0.0, 0.1, 0.2]
    assert pick["completions"] == ["a1", "a2", "a3"]
    assert tie["tied"] == [0, 2] and tie["chosen"] == 0 and not tie["all_bad"]
    assert bad["all_bad"] and bad["chosen"] is None
    # an all-bad flag makes no pairs: this file is where its reason goes
    assert bad["reason"] == "none of these are jokes" and pick["reason"] is None
    assert edit["edited"] == "a3, rewritten" and edit["metadata"]["edited_from"] == 2
    assert edit["completions"] == ["a1", "a2", "a3"]  # the rewrite is not a completion
    assert ranking["ranking"] == [2, 0, 1] and ranking["chosen"] == 2 and ranking["tied"] == []
    assert pick["ranking"] is None and pick["metadata"]["origins"] is None  # no arena
    out = tmp_path / "labels.jsonl"
    assert export_labels(repo, out) == 5
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(out), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 5 and ds[2]["all_bad"] is True and ds[4]["ranking"] == [2, 0, 1]
    assert ds[2]["reason"] == "none of these are jokes"


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_every_format_exports_the_pairs_of_picks_edits_and_rankings(tmp_path: Path,
                                                                    fmt: str) -> None:
    from datasets import load_dataset

    repo = labeled_repo()
    out = tmp_path / ("export.csv" if fmt == "csv" else "export.jsonl")
    # pick: 2, edit: 3, ranking of 3: 3; tie, all bad: 0
    assert datasets.export_to_file(repo, fmt, out) == 8
    ds = load_dataset("csv" if fmt == "csv" else "json", data_files=str(out), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 8
    kinds = ["pick"] * 2 + ["edit"] * 3 + ["ranking"] * 3
    if fmt in ("jsonl", "hh"):
        assert [row["metadata"]["label_kind"] for row in ds] == kinds
        assert set(ds[0]["metadata"]) == set(METADATA_KEYS)
        assert ds[0]["metadata"]["blind"] is True and ds[0]["metadata"]["chosen_position"] == 1
        assert ds[2]["metadata"]["chosen_source"] == "edit"
        assert [row["metadata"]["weight"] for row in ds] == [1.0] * 5 + [pytest.approx(2 / 3)] * 3
        assert [(r["metadata"]["chosen_rank"], r["metadata"]["rejected_rank"])
                for r in ds][5:] == [(1, 2), (1, 3), (2, 3)]
    if fmt == "jsonl":
        assert [row["weight"] for row in ds][4:] == [1.0] + [pytest.approx(2 / 3)] * 3
        assert [(r["chosen"], r["rejected"]) for r in ds][5:] == [
            ("a3", "a1"), ("a3", "a2"), ("a1", "a2")]
    if fmt == "csv":
        with out.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [json.loads(r["metadata"])["label_kind"] for r in rows] == kinds
    elif fmt not in ("jsonl", "hh"):
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
    assert unpaired.num_rows == 16 and set(unpaired.column_names) == {"prompt", "completion",
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
    done = split_export(repo, "trl-conversational", tmp_path / "out", test_share=0.3)
    train, test = done.rows("trl-conversational", "train"), done.rows("trl-conversational",
                                                                     "test")
    assert train + test == 80 and test > 0 and train > 0
    side: dict[str, str] = {}
    for name in ("train", "test"):
        path = done.path("trl-conversational", name)
        assert path == tmp_path / "out" / f"{name}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            prompt = json.loads(line)["prompt"][-1]["content"].removesuffix(" again")
            assert side.setdefault(prompt, name) == name, f"{prompt} leaked across"
    assert len(side) == 40
    again = split_export(repo, "trl-conversational", tmp_path / "again", test_share=0.3)
    assert again.path("trl-conversational", "test").read_text() == done.path(
        "trl-conversational", "test").read_text()  # stable
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_export(repo, "jsonl", tmp_path / "bad", test_share=1.5)


def test_cli_writes_the_split_and_the_labels_file(data_home: Path, tmp_path: Path) -> None:
    """`rlhf-desktop export --split DIR --labels FILE`: the real command line."""
    import json
    import subprocess
    import sys

    from rlhf_desktop.domain import Message, PreferencePair
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    repo.pairs.add([PreferencePair(prompt=(Message("user", f"q{k}"),), chosen=f"good {k}",
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


def ranked_repo() -> Repository:
    """labeled_repo() plus a partial ranking (the top 2 of 4 whole replies; a 5th failed)."""
    repo = labeled_repo()
    turn = make_turn(repo, ["r1", "r2", "r3", "r4", "r5"], prompt="partial")
    repo.conn.execute("UPDATE candidates SET finish_reason = 'error', error = 'boom' WHERE id = ?",
                      (turn.candidates[4].id,))
    turn = repo.conversations.get_turn(turn.id or 0)
    LabelingService(repo).rank(turn, [turn.candidates[2].id or 0, turn.candidates[0].id or 0])
    return repo


def test_ranking_file_holds_each_ranking_with_indices_best_first(tmp_path: Path) -> None:
    repo = ranked_repo()
    full, partial = list(ranking_records(repo))  # picks are not written as rankings
    assert full["prompt"] == "q5" and full["completions"] == ["a1", "a2", "a3"]
    assert full["ranking"] == [2, 0, 1] and full["unranked"] == []
    assert [full["completions"][i] for i in full["ranking"]] == ["a3", "a1", "a2"]
    assert full["metadata"]["scores"] == [0.0, 0.1, 0.2]
    # the failed reply is left out; the whole ones left unranked are tied below
    assert partial["completions"] == ["r1", "r2", "r3", "r4"]
    assert partial["ranking"] == [2, 0] and partial["unranked"] == [1, 3]
    assert partial["metadata"]["conversation_id"] is not None
    pairs = [p for p in repo.pairs.stream() if p.prompt_text == "partial"]
    assert len(pairs) == 1 + 2 * 2 and [p.weight for p in pairs] == [pytest.approx(3 / 5)] * 5
    done = export_folder(repo, tmp_path / "out", ["ranking"], labels=False)
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(done.path("ranking")), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 2 and ds["ranking"] == [[2, 0, 1], [2, 0]]


def test_weights_survive_export_and_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    repo = ranked_repo()
    out = tmp_path / "pairs.jsonl"
    datasets.export_to_file(repo, "jsonl", out)
    before = sorted((p.chosen, p.rejected, p.weight) for p in repo.pairs.stream())
    repo.close()
    monkeypatch.setenv("RLHF_DESKTOP_HOME", str(tmp_path / "fresh"))
    fresh = Repository.open()
    assert datasets.import_file(fresh, out).imported == len(before)
    assert sorted((p.chosen, p.rejected, p.weight) for p in fresh.pairs.stream()) == before


def test_parquet_holds_the_same_rows_as_jsonl_and_loads_by_config(tmp_path: Path) -> None:
    from datasets import load_dataset

    repo = ranked_repo()
    as_json = export_folder(repo, tmp_path / "json")
    as_parquet = export_folder(repo, tmp_path / "parquet", parquet=True)
    assert {f.path.suffix for f in as_parquet.files} == {".parquet"}
    assert "pairs-csv" not in {f.config for f in as_parquet.files}  # csv is a table already
    assert (tmp_path / "json" / "pairs.csv").exists()
    for name in ("pairs", "trl", "trl-conversational", "hh", "openai-dpo", "ranking",
                 "labels"):
        rows = [load_dataset(str(folder), name, split="train",
                             cache_dir=str(tmp_path / "hf-cache")).to_list()
                for folder in (tmp_path / "json", tmp_path / "parquet")]
        assert rows[0] == rows[1] and len(rows[0]) == as_json.rows(name), name
    with pytest.raises(ExportError, match="flat table"):
        export_folder(repo, tmp_path / "csv", ["csv"], parquet=True)


def test_parquet_without_datasets_says_how_to_install_it_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    repo = labeled_repo()
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(ExportError, match="pip install datasets"):
        export_folder(repo, tmp_path / "out", parquet=True)
    assert not (tmp_path / "out").exists()


def test_split_of_all_formats_keeps_conversations_together_in_every_file(tmp_path: Path
                                                                         ) -> None:
    repo = ranked_repo()
    done = export_folder(repo, tmp_path / "out", test_share=0.5, seed=3)
    assert (tmp_path / "out" / "trl" / "train.jsonl").exists()
    side: dict[int, str] = {}
    for name in ("pairs", "ranking", "labels"):
        for split in ("train", "test"):
            for line in done.path(name, split).read_text(encoding="utf-8").splitlines():
                conversation = json.loads(line)["metadata"]["conversation_id"]
                assert side.setdefault(conversation, split) == split
    assert set(side.values()) == {"train", "test"}
    assert sum(done.rows("trl", s) for s in ("train", "test")) == repo.pairs.count()


def test_cli_folder_ranking_parquet_and_refusals(data_home: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    ranked_repo().close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rlhf_desktop", "export", *args],
                              capture_output=True, text=True, timeout=110)

    done = cli("--folder", str(tmp_path / "all"), "--license", "CC-BY-4.0")
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert names == ["README.md", "hh.jsonl", "labels.jsonl", "openai-dpo.jsonl", "pairs.csv",
                     "pairs.jsonl", "ranking.jsonl", "trl-conversational.jsonl", "trl.jsonl"]
    assert "license: \"cc-by-4.0\"" in (tmp_path / "all" / "README.md").read_text()
    one = cli("--folder", str(tmp_path / "one"), "--format", "trl", "--parquet")
    assert one.returncode == 0, one.stderr
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "README.md", "labels.parquet", "trl.parquet"]
    stdout = cli("--format", "ranking")
    assert stdout.returncode == 0, stdout.stderr
    assert [json.loads(x)["ranking"] for x in stdout.stdout.splitlines()] == [[2, 0, 1], [2, 0]]
    for args, message in ((["--folder", "a", "--split", "b"], "not both"),
                          (["--format", "all"], "--folder DIR or --split DIR"),
                          (["--parquet"], "binary"),
                          (["--license", "mit"], "dataset card"),
                          (["--format", "csv", "-o", "x.parquet", "--parquet"], "flat table"),
                          (["--folder", str(tmp_path / "bad"), "--license", "my own"],
                           "not a licence identifier")):
        bad = cli(*args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    assert not (tmp_path / "bad").exists()


def test_cli_ranking_to_stdout_says_when_there_is_none(data_home: Path) -> None:
    import subprocess
    import sys

    Repository.open().close()
    done = subprocess.run([sys.executable, "-m", "rlhf_desktop", "export", "--format",
                           "ranking"], capture_output=True, text=True, timeout=110)
    assert done.returncode == 0 and done.stdout == ""
    assert "no rankings to export" in done.stderr and "Alt+R" in done.stderr
