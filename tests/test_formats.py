import json

import pytest

from rlhf_desktop.core.formats import (
    EXPORT_FORMATS,
    FormatError,
    export_record,
    parse_lines,
    parse_record,
    parse_transcript,
)
from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.providers.openai_dpo import validate_openai_dpo
from rlhf_desktop.services.datasets import pairs as datasets
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


@pytest.mark.parametrize("fmt", ["jsonl", "trl", "trl-conversational", "hh", "openai-dpo"])
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


SINGLE = PreferencePair(prompt=(Message("user", "Any pranks with a pen?"),), chosen="No, sorry!",
                        rejected="Sure.")


def test_trl_standard_prompts_are_alike_end_in_the_assistant_cue_and_never_glue_the_reply():
    # tune-probe.md: single-turn prompts were bare text ("…with a pen?No, sorry!"),
    # multi-turn ones transcripts, and neither had an assistant cue.
    for pair in (SINGLE, MULTI):
        record = export_record(pair, "trl")
        assert record["prompt"].startswith("\n\nHuman: ")
        assert record["prompt"].endswith("\n\nAssistant:")
        assert record["chosen"] == " " + pair.chosen and record["rejected"] == " " + pair.rejected
    assert (export_record(SINGLE, "trl")["prompt"] + export_record(SINGLE, "trl")["chosen"]
            == "\n\nHuman: Any pranks with a pen?\n\nAssistant: No, sorry!")
    assert "\n\nAssistant: Hello!\n\nHuman: Tell a joke" in export_record(MULTI, "trl")["prompt"]


def test_trl_standard_files_of_either_layout_import_the_same_pair():
    new = parse_record(export_record(SINGLE, "trl"))
    old = parse_record({"prompt": "Any pranks with a pen?", "chosen": "No, sorry!",
                        "rejected": "Sure."})
    assert new == old and new.chosen == "No, sorry!"


def test_openai_dpo_line_is_the_documented_shape_and_passes_the_sdk_types():
    record = export_record(MULTI, "openai-dpo")
    assert record == {
        "input": {"messages": [{"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "Tell a joke"}]},
        "preferred_output": [{"role": "assistant", "content": MULTI.chosen}],
        "non_preferred_output": [{"role": "assistant", "content": MULTI.rejected}],
    }
    validate_openai_dpo(json.loads(json.dumps(record)))


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("preferred_output"), "preferred_output"),
    (lambda r: r["input"]["messages"].append({"role": "bot", "content": "x"}), "messages"),
    (lambda r: r["non_preferred_output"][0].update(content=3), "non_preferred_output"),
    (lambda r: r.update(chosen="x"), "chosen"),
    (lambda r: r["preferred_output"].append({"role": "assistant", "content": "b"}), "one message"),
    (lambda r: r["input"]["messages"].pop(), "end with the user"),
])
def test_openai_dpo_validation_rejects_what_the_service_would(mutate, message):
    record = json.loads(json.dumps(export_record(MULTI, "openai-dpo")))
    mutate(record)
    with pytest.raises(FormatError, match=message):
        validate_openai_dpo(record)


def test_openai_dpo_export_of_real_pairs_validates_line_by_line(tmp_path, hh_data):
    repo = Repository.open()
    datasets.import_file(repo, write_jsonl(tmp_path / "hh.jsonl", hh_rows(hh_data, 0, 200)))
    out = tmp_path / "dpo.jsonl"
    assert datasets.export_to_file(repo, "openai-dpo", out) == 200
    lines = out.read_text(encoding="utf-8").splitlines()
    for line in lines:
        validate_openai_dpo(json.loads(line))
    back = parse_lines(line.encode() for line in lines)
    assert not back.errors
    assert [(p.prompt, p.chosen) for p in back.pairs] == [
        (p.prompt, p.chosen) for p in repo.pairs.list_all()]


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
    repo.pairs.add([PreferencePair(prompt=(Message("user", "old"),), chosen="x", rejected="y")])
    report = datasets.import_file(repo, path)
    assert [e.line for e in report.errors] == [2, 3, 4]
    assert "not valid JSON" in report.errors[0].message
    assert "UTF-8" in report.errors[2].message
    assert report.imported == 0 and repo.pairs.count() == 1  # nothing half-imported
    report = datasets.import_file(repo, path, skip_bad=True)
    assert report.imported == 2 and repo.pairs.count() == 3
    again = datasets.import_file(repo, path, skip_bad=True)
    assert again.duplicates == 2 and again.imported == 0


def test_dry_run_stores_nothing(tmp_path, hh_data):
    path = write_jsonl(tmp_path / "hh.jsonl", hh_rows(hh_data, 0, 20))
    repo = Repository.open()
    report = datasets.import_file(repo, path, dry_run=True)
    assert report.parsed == 20 and repo.pairs.count() == 0


def test_export_then_import_into_a_fresh_folder_gives_the_same_pairs(tmp_path, monkeypatch,
                                                                     hh_data):
    src = write_jsonl(tmp_path / "hh.jsonl", hh_rows(hh_data, 0, 50))
    repo = Repository.open()
    datasets.import_file(repo, src)
    repo.pairs.add([MULTI], source="edit")
    before = [(p.prompt, p.chosen, p.rejected, p.reason) for p in repo.pairs.list_all()]
    out = tmp_path / "export.jsonl"
    assert datasets.export_to_file(repo, "jsonl", out) == 51
    repo.close()
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("RLHF_DESKTOP_HOME", str(fresh))
    repo2 = Repository.open()
    datasets.import_file(repo2, out)
    after = [(p.prompt, p.chosen, p.rejected, p.reason) for p in repo2.pairs.list_all()]
    assert after == before


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_exports_load_with_datasets(tmp_path, fmt):
    from datasets import load_dataset

    repo = Repository.open()
    repo.pairs.add([MULTI, PreferencePair(prompt=(Message("user", "q"),), chosen="a",
                                          rejected="b")])
    out = tmp_path / f"export.{ 'csv' if fmt == 'csv' else 'jsonl'}"
    datasets.export_to_file(repo, fmt, out)
    loader = "csv" if fmt == "csv" else "json"
    ds = load_dataset(loader, data_files=str(out), split="train",
                      cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 2
    if fmt == "openai-dpo":
        assert set(ds.column_names) == {"input", "preferred_output", "non_preferred_output"}
        return
    assert {"chosen", "rejected"} <= set(ds.column_names)
    if fmt == "trl-conversational":
        assert ds[0]["prompt"][-1]["role"] == "user"
        assert ds[0]["chosen"][0]["role"] == "assistant"
