"""Tuning for real: SmolLM2-135M from the shipped GGUF, TRL, peft, llama.cpp's converter and
llama.cpp itself; tiny settings (max_length 96, two steps of one pair) keep each test short.

Times on the shared 2-core machine (4 other jobs): the first test of a session also fills the
cache (dequantised base about 60 s, converter download about 20 s); then about 40-70 s each.
"""

import argparse
import asyncio
import json
import subprocess
import sys

import pytest

from rlhf_desktop import config
from rlhf_desktop.providers.errors import ProviderConfigError
from rlhf_desktop.services.datasets import pairs as datasets
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.tune import cli as tune_cli
from rlhf_desktop.tune.options import TuneConfig
from rlhf_desktop.tune.process import TuneProcess
from rlhf_desktop.tune.versions import get_version, list_versions
from tests.helpers import write_jsonl
from tests.tune.conftest import needs_tune_stack, short_hh_rows

pytestmark = [pytest.mark.slow, pytest.mark.llama, pytest.mark.timeout(120)]

TINY = {"max_length": 96, "batch_size": 1, "grad_accum": 1, "threads": 1, "lora_r": 4}


@pytest.fixture
def pairs_file(tmp_path):
    """Eight real HH pairs with short prompts, plus one whose prompt cannot fit."""
    needs_tune_stack()
    rows = short_hh_rows(8)
    rows.insert(3, {"prompt": "Human: " + "please explain this at length " * 60,
                    "chosen": "Sure.", "rejected": "No."})
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def parse(*argv):
    parser = argparse.ArgumentParser()
    tune_cli.add_tune_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["tune", *argv])


def first_token_logprobs(base, prompt, adapter=None):
    """Top-10 log-probabilities of the next token after ``prompt`` (llama.cpp via xllamacpp)."""
    import tempfile
    from pathlib import Path

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(base)
    params.n_ctx = 256
    params.n_parallel = 1
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    params.verbosity = 0
    params.ui = False
    params.hostnames = [str(Path(tempfile.mkdtemp()) / "engine.sock")]
    if adapter is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(adapter), 1.0)]
    server = xllamacpp.Server(params)
    reply = server.handle_completions({"prompt": prompt, "max_tokens": 1, "temperature": 0,
                                       "n_probs": 10})
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    return {t["token"]: t["logprob"] for t in top}


# On a fresh machine the first conversion also fetches llama.cpp's converter (38 MB) and
# imports torch from a cold disk in a child; beside the other test worker that took over
# 120 s here (20 s once cached). A hang guard, not a speed target.
@pytest.mark.timeout(420)
def test_rlhf_desktop_tune_makes_a_version_that_llama_cpp_chats_with(pairs_file, data_home,
                                                                      capsys):
    repo = Repository.open()
    assert datasets.import_file(repo, pairs_file).imported == 9
    repo.close()
    code = tune_cli.run_tune(parse("--max-steps", "2", "--max-length", "96", "--batch-size", "1",
                                   "--grad-accum", "1", "--threads", "1", "--lora-r", "4",
                                   "--nice", "0"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "chat model v1 saved" in out
    assert "8 of 9 pairs used" in err and "last message alone are too long" in err
    version = get_version(1)
    assert version.manifest["steps"] == 2
    assert version.manifest["pairs"]["used"] == 8
    assert len(version.manifest["pairs"]["left_out_lines"]) == 1
    run_dir = version.manifest["run_dir"]
    events = [json.loads(line) for line in open(f"{run_dir}/progress.jsonl")]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2]
    assert all(e["loss"] is not None and e["accuracy"] is not None for e in steps)
    training = next(e for e in events if e.get("stage") == "training")
    assert training["trainer_pairs"] == 8  # TRL dropped nothing beyond the reported pair

    base = config.default_gguf_path()
    version.check_base(base)
    prompt = "<|im_start|>user\nHow can I make my friend laugh?<|im_end|>\n<|im_start|>assistant\n"
    before = first_token_logprobs(base, prompt)
    after = first_token_logprobs(base, prompt, version.adapter)
    assert len(before) == 10 and all(v < 0 for v in before.values())
    shared = before.keys() & after.keys()
    assert shared
    diff = max(abs(before[t] - after[t]) for t in shared)
    assert diff > 1e-4  # the adapter is applied

    # The app's built-in provider chats with that version when the setting names it.
    from rlhf_desktop.config import Settings
    from rlhf_desktop.domain import Message, SamplingParams
    from rlhf_desktop.providers import choose_provider

    provider, _why = choose_provider(Settings(provider="local", chat_model_version=1,
                                                n_ctx=512))
    assert provider.model.endswith("+v0001") and "chat model v1 (tuned)" in provider.describe()
    replies = asyncio.run(provider.generate([Message("user", "Say hello.")],
                                            SamplingParams(n=1, max_tokens=8, seed=1)))
    assert replies[0].text.strip() and replies[0].error is None
    asyncio.run(provider.aclose())
    with pytest.raises(ProviderConfigError, match="Chat model v2 is not in"):
        choose_provider(Settings(provider="local", chat_model_version=2))


def test_cancel_keeps_the_checkpoint_and_a_new_start_resumes(pairs_file, tmp_path):
    cfg = TuneConfig.from_mapping({**TINY, "data": str(pairs_file),
                                   "output_dir": str(tmp_path / "run"), "max_steps": 3,
                                   "export_gguf": False})
    process = TuneProcess(cfg, nice=0)
    process.start()
    try:
        seen = []
        while not any(e["event"] == "checkpoint" for e in seen):
            assert process.poll() is None, process.log_tail()
            seen += process.events()
            import time

            time.sleep(0.2)
        process.cancel()
        assert process.wait(100) == 3, process.log_tail()
    finally:
        process.kill()
    seen += process.events()
    done = next(e for e in seen if e["event"] == "done")
    assert done["status"] == "cancelled" and done["steps"] < 3
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and checkpoints[-1].name == f"checkpoint-{done['steps']}"
    assert not (tmp_path / "run" / "adapter").exists()

    again = TuneProcess(cfg, nice=0)
    again.start()
    try:
        assert again.wait(100) == 0, again.log_tail()
    finally:
        again.kill()
    events = again.events()
    training = next(e for e in events if e.get("stage") == "training")
    assert training["resume_from"] == str(checkpoints[-1])
    assert [e["step"] for e in events if e["event"] == "step"] == list(
        range(done["steps"] + 1, 4))
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert list_versions() == []  # export_gguf off: no version


def test_accelerate_launch_runs_the_same_entry_point_on_the_apps_export(pairs_file, tmp_path):
    repo = Repository.open()
    datasets.import_file(repo, pairs_file)
    export = tmp_path / "export.jsonl"
    assert datasets.export_to_file(repo, "trl-conversational", export) == 9
    repo.close()
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("\n".join(
        [f"{k}: {v}" for k, v in TINY.items()]
        + ["data: export.jsonl", "output_dir: out", "max_steps: 2", "export_gguf: false"]))
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu",
                "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "-m", "rlhf_desktop.tune", "--config", str(cfg_file)]
    done = subprocess.run(launcher, capture_output=True, text=True, timeout=110,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()
              if line.startswith('{"event"')]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    assert events[-1]["event"] == "done" and events[-1]["status"] == "completed"
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()


def test_cancel_while_loading_trains_nothing_and_says_cancelled(pairs_file, tmp_path):
    import time

    cfg = TuneConfig.from_mapping({**TINY, "data": str(pairs_file),
                                   "output_dir": str(tmp_path / "run"), "max_steps": 2})
    process = TuneProcess(cfg, nice=0)
    process.start()
    try:
        while not process.events():  # the child has installed its signal handlers
            assert process.poll() is None, process.log_tail()
            time.sleep(0.1)
        process.cancel()
        assert process.wait(100) == 3, process.log_tail()
    finally:
        process.kill()
    done = process.last_events.get("done") or next(
        e for e in process.events() if e["event"] == "done")
    assert done["status"] == "cancelled" and done["steps"] == 0
    assert not any((tmp_path / "run").glob("checkpoints/checkpoint-*"))
    assert list_versions() == []


def test_several_processes_that_are_not_one_distributed_run_are_refused(pairs_file, tmp_path):
    # Measured: on a machine without GPUs, `--multi_gpu --num_processes 2` started two
    # independent runs, each on every pair, writing into the same folder.
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(json.dumps({**TINY, "data": str(pairs_file),
                                    "output_dir": str(tmp_path / "out"), "max_steps": 1}))
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "-m", "rlhf_desktop.tune", "--config", str(cfg_file)]
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has GPUs: the processes do form one run")
    done = subprocess.run(launcher, capture_output=True, text=True, timeout=110,
                          cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert "do not form one distributed run" in done.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()
