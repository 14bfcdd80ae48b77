"""The command line, run as a user would (subprocesses on a temp data folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import hh_rows, write_jsonl


def cli(*args: str, data_dir=None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rlhf_desktop"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=os.environ.copy(),
                          timeout=110)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_the_commands():
    out = cli("--help").stdout
    for command in ("train", "eval", "score", "stats", "export", "import", "chat"):
        assert command in out


@pytest.mark.slow
def test_import_train_eval_score_stats_export(tmp_path, hh_data, data_home):
    train_file = write_jsonl(tmp_path / "train.jsonl", hh_rows(hh_data, 0, 160))
    test_file = write_jsonl(tmp_path / "test.jsonl", hh_rows(hh_data, 900, 120))
    assert "imported 160 pairs" in cli("import", str(train_file)).stdout
    trained = json.loads(cli("train", "--json").stdout)
    assert trained["version"] == 1 and trained["pairs"] == 160
    assert 0.0 <= trained["cv_accuracy"] <= 1.0
    assert (data_home / "models" / "v0001" / "reward_model.joblib").exists()
    result = json.loads(cli("eval", "--data", str(test_file), "--json").stdout)
    assert result["pairs"] == 120 and 0.0 <= result["accuracy"] <= 1.0
    assert result["model_version"] == 1
    scored = json.loads(cli("score", "--prompt", "hi", "hello there", "go away", "--json").stdout)
    assert scored["model_version"] == 1 and len(scored["scores"]) == 2
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["pairs"] == 160 and stats["model_version"] == 1
    out = tmp_path / "out.jsonl"
    cli("export", "--format", "trl", "-o", str(out))
    assert len(out.read_text().splitlines()) == 160
    stdout_export = cli("export", "--format", "hh").stdout.splitlines()
    assert len(stdout_export) == 160 and "\n\nHuman:" in json.loads(stdout_export[0])["chosen"]


def test_data_dir_flag_redirects_everything(tmp_path):
    other = tmp_path / "elsewhere"
    src = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    cli("import", str(src), data_dir=other)
    assert (other / "rlhf.sqlite3").exists()
    assert json.loads(cli("stats", "--json", data_dir=other).stdout)["pairs"] == 1


def test_bad_import_exits_nonzero_with_line_numbers(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\nnot json\n'
                   '{"prompt": "q", "chosen": "a", "rejected": "c"\n')
    proc = cli("import", str(src), check=False)
    assert proc.returncode == 2
    assert "bad.jsonl:2:" in proc.stderr and "--skip-bad" in proc.stderr
    assert "bad.jsonl:3: not valid JSON: Expecting ',' delimiter at the end of the line" \
        in proc.stderr  # not "column 1" of a line after the newline
    assert json.loads(cli("stats", "--json").stdout)["pairs"] == 0
    # A dry run is a check: it fails on bad lines unless --skip-bad says they may be skipped.
    assert cli("import", str(src), "--dry-run", check=False).returncode == 1
    dry = cli("import", str(src), "--dry-run", "--skip-bad")
    assert "1 would be imported" in dry.stdout
    assert json.loads(cli("stats", "--json").stdout)["pairs"] == 0
    assert cli("import", str(src), "--skip-bad").returncode == 0
    assert json.loads(cli("stats", "--json").stdout)["pairs"] == 1


def test_errors_are_one_clear_line(tmp_path):
    proc = cli("import", str(tmp_path / "missing.jsonl"), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("train", check=False)
    assert proc.returncode == 2 and "no preference pairs" in proc.stderr
    proc = cli("eval", "--data", str(tmp_path / "x.jsonl"), check=False)
    assert proc.returncode == 2 and "no trained reward model" in proc.stderr


def test_export_into_a_closed_pipe_exits_quietly(tmp_path):
    rows = [{"prompt": f"question {i}", "chosen": "a long helpful answer " * 20 + str(i),
             "rejected": f"no {i}"} for i in range(1500)]  # ~700 kB: more than a pipe holds
    home = tmp_path / "data"
    cli("import", str(write_jsonl(tmp_path / "many.jsonl", rows)), data_dir=home)
    cmd = [sys.executable, "-m", "rlhf_desktop", "--data-dir", str(home), "export",
           "--format", "trl"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ.copy())
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # what `| head -1` does: read a little, then close
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert json.loads(first)["chosen"]
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert stderr == ""
    assert proc.returncode in (0, 141)


def test_import_messages_use_the_right_number(tmp_path):
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}]
    bad = tmp_path / "one-bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n", encoding="utf-8")
    proc = cli("import", str(bad), data_dir=tmp_path / "d", check=False)
    assert proc.returncode == 2
    assert "1 line is bad" in proc.stderr and "1 lines" not in proc.stderr
    assert "1 bad line" in proc.stderr and "1 pair read from 2 lines" in proc.stderr
    assert "the 1 good pair." in proc.stderr
    one = write_jsonl(tmp_path / "one.jsonl", rows)
    assert "imported 1 pair (1 pair read from 1 line," in cli(
        "import", str(one), data_dir=tmp_path / "d").stdout


@pytest.mark.slow
def test_eval_warns_when_the_eval_pairs_were_trained_on(tmp_path, hh_data, data_home):
    trained_rows = hh_rows(hh_data, 0, 60)
    fresh_rows = hh_rows(hh_data, 600, 30)
    cli("import", str(write_jsonl(tmp_path / "train.jsonl", trained_rows)))
    cli("train")
    both = write_jsonl(tmp_path / "both.jsonl", trained_rows + fresh_rows)
    proc = cli("eval", "--data", str(both), "--json")
    result = json.loads(proc.stdout)
    assert result["pairs"] == 90 and result["pairs_in_training_data"] == 60
    assert result["training_data_source"] == "model" and result["unseen_pairs"] == 30
    assert 0.0 <= result["accuracy_unseen"] <= 1.0 and len(result["warnings"]) == 1
    assert "60 of 90 eval pairs" in proc.stderr and "30 unseen pairs" in proc.stderr
    fresh = json.loads(cli("eval", "--data", str(write_jsonl(tmp_path / "fresh.jsonl",
                                                             fresh_rows)), "--json").stdout)
    assert fresh["pairs_in_training_data"] == 0 and fresh["warnings"] == []
    assert fresh["accuracy_unseen"] == fresh["accuracy"]


@pytest.mark.slow
def test_models_lists_versions_and_use_rolls_back(tmp_path, hh_data, data_home):
    cli("import", str(write_jsonl(tmp_path / "train.jsonl", hh_rows(hh_data, 0, 30))))
    first = json.loads(cli("train", "--json").stdout)
    assert first["adopted"] and first["adoption"]["reason"] == "first model"
    second = json.loads(cli("train", "--json").stdout)
    assert second["adopted"] and "too few new pairs" in second["adoption"]["reason"]
    listed = json.loads(cli("models", "--json").stdout)
    assert [v["version"] for v in listed["versions"]] == [1, 2] and listed["in_use"] == 2
    assert "* v2" in cli("models").stdout
    assert "using v1" in cli("use", "v1").stdout
    assert json.loads(cli("models", "--json").stdout)["in_use"] == 1
    scored = json.loads(cli("score", "--prompt", "hi", "hello there", "go away", "--json").stdout)
    assert scored["model_version"] == 1
    missing = cli("use", "9", check=False)
    assert missing.returncode == 2 and "versions: v1, v2" in missing.stderr
    assert "v2" in cli("use", "latest").stdout
    assert json.loads(cli("models", "--json").stdout)["in_use"] == 2


@pytest.mark.slow
def test_eval_with_a_model_saved_before_training_keys_uses_the_stored_pairs(
        tmp_path, hh_data, data_home):
    import io

    import joblib

    from rlhf_desktop.reward import signing

    rows = hh_rows(hh_data, 0, 30)
    cli("import", str(write_jsonl(tmp_path / "train.jsonl", rows)))
    cli("train")
    folder = data_home / "models" / "v0001"
    payload = joblib.load(folder / "reward_model.joblib")
    del payload["train_keys"]  # as the previous code saved it
    buffer = io.BytesIO()
    joblib.dump(payload, buffer)
    (folder / "reward_model.joblib").write_bytes(buffer.getvalue())
    key = signing.load_key(create=False)
    (folder / "reward_model.joblib.sig").write_text(signing.sign(buffer.getvalue(), key))
    proc = cli("eval", "--data", str(write_jsonl(tmp_path / "e.jsonl", rows[:10])), "--json")
    result = json.loads(proc.stdout)
    assert result["training_data_source"] == "stored" and result["pairs_in_training_data"] == 10
    assert "may have been trained on them" in proc.stderr and result["accuracy_unseen"] is None


def test_stats_names_the_pairs_by_source_in_words(tmp_path: Path, data_home: Path) -> None:
    src = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    cli("import", str(src))
    lines = cli("stats").stdout.splitlines()
    assert "pairs         1 (import 1)" in lines, lines  # not a Python dict: {'import': 1}
