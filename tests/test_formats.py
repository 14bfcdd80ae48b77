import json

import pytest

from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.services import datasets
from rlhf_desktop.services.formats import (
    EXPORT_FORMATS,
    FormatError,
    export_record,
    parse_record,
    parse_transcript,
)
from rlhf_desktop.storage.repo import Repository
from tests.helpers import hh_rows, write_jsonl

MULTI = PreferencePair(
    prompt=(Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Tell a joke")),
    chosen="Why did the chicken cross the road?",
    rejected="No.",
    reason="funnier",
)


def test_transcript_parsing():
    text = "Human: what are pranks?\n\nAssistant: Like jokes?\n\nHuman: yep"
    assert parse_transcript(text) == [
        Message("user", "what are pranks?"),
        Message("assistant", "Like jokes?"),
        Message("user", "yep"),
    ]
    assert parse_transcript("just a question") == [Message("user", "just a question")]
    assert parse_transcript("\n\nHuman: q\n\nAssistant:") == [Message("user", "q")]


@pytest.mark.parametrize("fmt", ["jsonl", "trl", "trl-conversational", "hh"])
def test_every_json_format_round_trips(fmt):
    back = parse_record(json.loads(json.dumps(export_record(MULTI, fmt))))
    assert back.prompt == MULTI.prompt
    assert (back.chosen, back.rejected) == (MULTI.chosen, MULTI.rejected)


def test_trl_shapes_match_the_documentation():
    std = export_record(MULTI, "trl")
    assert set(std) == {"prompt", "chosen", "rejected"}
    assert all(isinstance(v, str) for v in std.values())
    conv = export_record(MULTI, "trl-conversational")
    assert conv["prompt"][-1] == {"role": "user", "content": "Tell a joke"}
    assert conv["chosen"] == [{"role": "assistant", "content": MULTI.chosen}]
    single = PreferencePair(prompt=(Message("user", "The sky is"),), chosen="blue", rejected="x")
    assert export_record(single, "trl")["prompt"] == "The sky is"


def test_trl_implicit_prompt_and_original_hh():
    implicit = {
        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
    }
    pair = parse_record(implicit)
    assert pair.prompt == (Message("user", "q"),) and (pair.chosen, pair.rejected) == ("a", "b")
    hh = {"chosen": "\n\nHuman: q\n\nAssistant: yes indeed",
          "rejected": "\n\nHuman: q\n\nAssistant: no"}
    pair = parse_record(hh)
    assert pair.prompt == (Message("user", "q"),)
    assert (pair.chosen, pair.rejected) == ("yes indeed", "no")


@pytest.mark.parametrize("record, message", [
    ([1, 2], "JSON object"),
    ({"chosen": "a"}, "needs 'chosen' and 'rejected'"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "'chosen' must be a string"),
    ({"prompt": [], "chosen": "a", "rejected": "b"}, "non-empty list"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "must not be empty"),
])
def test_bad_records_say_why(record, message):
    with pytest.raises(FormatError, match=message):
        parse_record(record)


def test_real_hh_rows_parse(hh_data):
    rows = hh_rows(hh_data)
    pairs = [parse_record(r) for r in rows]
    assert len(pairs) == len(rows)
    assert all(p.prompt[-1].role == "user" for p in pairs)
    assert all(p.prompt[0].content and p.chosen for p in pairs)


def test_import_reports_bad_lines_by_number_and_stores_nothing(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    path.write_bytes(
        (good + "\n{not json\n" + json.dumps({"prompt": "q2"}) + "\n").encode()
        + b"\xff\xfe bad bytes\n"
        + (json.dumps({"prompt": "q3", "chosen": "c", "rejected": "d"}) + "\n").encode()
    )
    repo = Repository.open()
    repo.add_pairs([PreferencePair(prompt=(Message("user", "old"),), chosen="x", rejected="y")])
    report = datasets.import_file(repo, path)
    assert [e.line for e in report.errors] == [2, 3, 4]
    assert "not valid JSON" in report.errors[0].message
    assert "UTF-8" in report.errors[2].message
    assert report.imported == 0 and repo.count_pairs() == 1  # nothing half-imported
    report = datasets.import_file(repo, path, skip_bad=True)
    assert report.imported == 2 and repo.count_pairs() == 3
    again = datasets.import_file(repo, path, skip_bad=True)
    assert again.duplicates == 2 and again.imported == 0


def test_dry_run_stores_nothing(tmp_path, hh_data):
    path = write_jsonl(tmp_path / "hh.jsonl", hh_rows(hh_data, 0, 20))
    repo = Repository.open()
    report = datasets.import_file(repo, path, dry_run=True)
    assert report.parsed == 20 and repo.count_pairs() == 0


def test_export_then_import_into_a_fresh_folder_gives_the_same_pairs(tmp_path, monkeypatch,
                                                                     hh_data):
    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows(hh_data, 0, 50))
    repo = Repository.open()
    datasets.import_file(repo, src)
    repo.add_pairs([MULTI], source="edit")
    before = [(p.prompt, p.chosen, p.rejected, p.reason) for p in repo.all_pairs()]
    out = tmp_path / "export.jsonl"
    assert datasets.export_to_file(repo, "jsonl", out) == 51
    repo.close()
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("RLHF_DESKTOP_HOME", str(fresh))
    repo2 = Repository.open()
    datasets.import_file(repo2, out)
    after = [(p.prompt, p.chosen, p.rejected, p.reason) for p in repo2.all_pairs()]
    assert after == before


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_exports_load_with_datasets(tmp_path, fmt):
    from datasets import load_dataset

    repo = Repository.open()
    repo.add_pairs([MULTI, PreferencePair(prompt=(Message("user", "q"),), chosen="a",
                                          rejected="b")])
    out = tmp_path / f"export.{ 'csv' if fmt == 'csv' else 'jsonl'}"
    datasets.export_to_file(repo, fmt, out)
    loader = "csv" if fmt == "csv" else "json"
    ds = load_dataset(loader, data_files=str(out), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 2
    assert {"chosen", "rejected"} <= set(ds.column_names)
    if fmt == "trl-conversational":
        assert ds[0]["prompt"][-1]["role"] == "user"
        assert ds[0]["chosen"][0]["role"] == "assistant"
