"""The command line, run as a user would (subprocesses on a temp data folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import hh_rows, write_jsonl


def cli(*args: str, data_dir=None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rlhf_desktop"]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=os.environ.copy(),
                          timeout=600)
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
