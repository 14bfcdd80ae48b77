"""Progress lines, chat-model versions, the converter's offline error and the CLI's
checks before a process starts (no torch, no training)."""

import argparse
import json
from pathlib import Path

import pytest

from rlhf_desktop.tune import cli as tune_cli
from rlhf_desktop.tune.convert import ConversionError, converter_dir
from rlhf_desktop.tune.progress import Progress, read_events
from rlhf_desktop.tune.versions import VersionError, get_version, list_versions, register


def test_progress_lines_are_read_whole_and_resumable(tmp_path):
    path = tmp_path / "progress.jsonl"
    progress = Progress(path)
    progress.emit("step", step=1, loss=float("nan"), accuracy=0.5)
    events, offset = read_events(path)
    assert [e["event"] for e in events] == ["step"]
    assert events[0]["loss"] is None and events[0]["accuracy"] == 0.5
    with path.open("a") as fh:
        fh.write('{"event": "step", "step": 2')  # a line still being written
    more, offset2 = read_events(path, offset)
    assert more == [] and offset2 == offset
    with path.open("a") as fh:
        fh.write("}\n")
    more, _ = read_events(path, offset)
    assert [e["step"] for e in more] == [2]
    progress.close()


def test_versions_are_numbered_listed_and_checked_against_their_base(tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"GGUF fake adapter")
    base = tmp_path / "base.gguf"
    base.write_bytes(b"base weights")
    from rlhf_desktop.tune.base_model import file_sha256

    manifest = {"base": {"gguf": str(base), "sha256": file_sha256(base)}, "steps": 2}
    v1 = register(adapter, manifest)
    v2 = register(adapter, manifest)
    assert (v1.version, v2.version) == (1, 2)
    assert v2.folder.name == "v0002" and v2.adapter.read_bytes() == b"GGUF fake adapter"
    (v1.folder.parent / "v0003").mkdir()  # half-written: no manifest, no adapter
    assert [v.version for v in list_versions()] == [1, 2]
    assert get_version(2).manifest["steps"] == 2
    with pytest.raises(VersionError, match="no chat model v9"):
        get_version(9)
    get_version(1).check_base(base)
    base.write_bytes(b"another base")
    with pytest.raises(VersionError, match="another base file"):
        get_version(1).check_base(base)


def test_converter_download_offline_says_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("xllamacpp")
    monkeypatch.delenv("RLHF_DESKTOP_LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip as it behaves without a network
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(ConversionError, match=r"download failed.*Connect to the internet"):
        converter_dir(tmp_path / "cache")
    assert not any((tmp_path / "cache" / "llama-cpp-converters").glob("*/*.py"))
    monkeypatch.setenv("RLHF_DESKTOP_LLAMA_CPP_DIR", str(tmp_path))
    with pytest.raises(ConversionError, match=r"has no convert_lora_to_gguf\.py"):
        converter_dir(tmp_path / "cache")


def parse(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    tune_cli.add_tune_parser(sub)
    return parser.parse_args(["tune", *argv])


def test_tune_without_pairs_says_so_and_starts_nothing(capsys, data_home):
    assert tune_cli.run_tune(parse("--max-steps", "2")) == 2
    err = capsys.readouterr().err
    assert "no preference pairs to tune on yet" in err
    assert not list((data_home / "tune-runs").glob("*/tune-config.json"))


def test_tune_resume_without_a_run_and_list_without_versions(capsys):
    assert tune_cli.run_tune(parse("--resume")) == 2
    assert "no run to resume" in capsys.readouterr().err
    assert tune_cli.run_tune(parse("--list")) == 0
    assert capsys.readouterr().out.startswith("v0     the base model")
    assert tune_cli.run_tune(parse("--list", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_finished_run_started_again_reuses_its_version(tmp_path):
    from pathlib import Path

    from rlhf_desktop.tune.base_model import BaseModel
    from rlhf_desktop.tune.options import TuneConfig
    from rlhf_desktop.tune.pipeline import VERSION_MARKER, _already_exported
    from rlhf_desktop.tune.train import TuneResult

    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"adapter")
    version = register(adapter, {"base": {"gguf": "b.gguf", "sha256": "0"}, "steps": 2})
    cfg = TuneConfig.from_mapping({"data": "p.jsonl", "output_dir": str(tmp_path / "run")})
    Path(cfg.output_dir).mkdir()
    result = TuneResult("completed", 2, 2, "adapter", BaseModel("x", Path("b.gguf"), "0"))
    assert _already_exported(cfg, result) is None
    (Path(cfg.output_dir) / VERSION_MARKER).write_text(json.dumps({"version": 1, "steps": 2}))
    assert _already_exported(cfg, result) == version
    result.steps = 4  # resumed with more steps: a new version
    assert _already_exported(cfg, result) is None


def _cli_commands():
    from rlhf_desktop import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return cli, sub.choices


def test_rlhf_desktop_tune_and_openai_dpo_export_are_wired_into_the_cli(capsys, data_home):
    cli, commands = _cli_commands()
    if "tune" not in commands:
        pytest.skip("rlhf_desktop/cli does not add `tune` yet (add_tune_parser/run_tune)")
    assert cli.main(["tune", "--list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["tune", "--max-steps", "1"]) == 2
    assert "no preference pairs" in capsys.readouterr().err
    from rlhf_desktop.domain import Message, PreferencePair
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    repo.pairs.add([PreferencePair(prompt=(Message("user", "q"),), chosen="a", rejected="b")])
    repo.close()
    assert cli.main(["export", "--format", "openai-dpo"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["preferred_output"] == [{"role": "assistant", "content": "a"}]


def test_list_says_1_step_in_the_singular(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          data_home: Path) -> None:
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"not a GGUF file; --list reads the manifest only")
    for steps in (1, 3):
        register(adapter, {"kind": "lora", "steps": steps, "pairs": {"used": 4}})
    assert tune_cli.run_tune(parse("--list")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].endswith("· 4 pairs · 1 step") and out[2].endswith("· 4 pairs · 3 steps")
