"""A reward model for real: TRL's RewardTrainer on SmolLM2-135M from the shipped GGUF, trained
from the app's own export by ``accelerate launch --num_processes 1 -m rlhf_desktop.tune`` (2
steps on CPU), registered as a ranker, then ranking a turn in the app's RewardService and
compared with the tiny model; and a broken ranker folder that falls back to the tiny model.

Times on the shared 2-core machine: the accelerate run about 40-70 s (the base model is
dequantised once per cache, see conftest.py), the rest seconds.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_desktop import config
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.services.datasets import pairs as datasets
from rlhf_desktop.storage.repo import Repository
from tests.fakes import FakeProvider, HashEmbedder
from tests.helpers import write_jsonl
from tests.tune.conftest import TEST_CACHE, needs_tune_stack, short_hh_rows

pytestmark = [pytest.mark.slow, pytest.mark.llama, pytest.mark.timeout(120)]

TINY = {"max_length": 96, "batch_size": 1, "grad_accum": 1, "threads": 1, "lora_r": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One accelerate run on 10 exported HH pairs (3 held out); its output and folders."""
    needs_tune_stack()
    work = tmp_path_factory.mktemp("reward-run")
    home = work / "home"
    home.mkdir()
    rows = short_hh_rows(14)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RLHF_DESKTOP_HOME", str(home))
        repo = Repository.open()
        datasets.import_file(repo, write_jsonl(work / "pairs.jsonl", rows[:10]))
        assert datasets.export_to_file(repo, "trl-conversational", work / "export.jsonl") == 10
        repo.close()
    write_jsonl(work / "test.jsonl", rows[10:])
    (work / "run.yaml").write_text("\n".join(
        [f"{k}: {v}" for k, v in TINY.items()]
        + ["method: reward", "data: export.jsonl", "output_dir: out", "max_steps: 2",
           "eval_share: 0.3"]))
    env = {**os.environ, "RLHF_DESKTOP_HOME": str(home), "RLHF_DESKTOP_CACHE": str(TEST_CACHE),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu",
                "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "-m", "rlhf_desktop.tune", "--config",
                str(work / "run.yaml")]
    done = subprocess.run(launcher, capture_output=True, text=True, timeout=110, cwd=work,
                          env=env, check=False)
    return {"work": work, "home": home, "done": done, "rows": rows}


def test_accelerate_launch_trains_a_reward_model_from_the_apps_export(trained):
    done = trained["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()
              if line.startswith('{"event"')]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    assert all(e["loss"] is not None and e["accuracy"] is not None
               for e in events if e["event"] == "step")
    data = next(e for e in events if e["event"] == "data")
    assert data["pairs"] == 10 and data["used"] + data["held_out"] == 10
    assert 1 <= data["held_out"] <= 5
    last = events[-1]
    assert last["event"] == "done" and last["status"] == "completed"
    assert last["ranker"] == "r0001"
    folder = trained["home"] / "rankers" / "r0001"
    assert last["ranker_dir"] == str(folder)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForSequenceClassification"]
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("adapter_*"))  # LoRA merged: a plain transformers folder
    meta = json.loads((folder / "ranker.json").read_text())
    assert meta["steps"] == 2 and meta["base"]["name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert meta["pairs"]["used"] == data["used"] and meta["max_length"] == 96
    assert meta["held_out"]["pairs"] == data["held_out"]
    assert 0.0 <= meta["held_out"]["accuracy"] <= 1.0
    assert last["held_out"]["accuracy"] == meta["held_out"]["accuracy"]
    keys = json.loads((folder / "train-keys.json").read_text())
    assert len(keys) == data["used"]


def test_the_app_ranks_with_the_ranker_and_compares_it_with_the_tiny_model(trained):
    assert trained["done"].returncode == 0, trained["done"].stderr[-2000:]
    from rlhf_desktop.reward.hf_ranker import HFRanker
    from rlhf_desktop.services.ranking.evaluation import RankerEvalService, describe
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.services.ranking.slot import TRANSFORMERS_RANKER_VERSION
    from tests.helpers import chat_service

    folder = trained["home"] / "rankers" / "r0001"
    rewards = RewardService(embedder=HashEmbedder())  # type: ignore[arg-type]
    state = {"settings": config.load_settings()}
    service = RankerEvalService(rewards, lambda: state["settings"],
                                lambda s: state.update(settings=s))
    service.use(str(folder))
    assert config.load_settings().ranker == str(folder)
    prompt = "How can I make my friend laugh?"
    replies = ["Tell a joke you both know.", "No.", "Try a silly face, then a pun."]
    ranked = rewards.rank(prompt, replies)
    assert ranked.version == TRANSFORMERS_RANKER_VERSION
    assert rewards.scoring_version == TRANSFORMERS_RANKER_VERSION
    assert rewards.ranker.error is None
    direct = HFRanker.load(folder).score(prompt, replies)
    assert ranked.scores == pytest.approx(direct, abs=1e-4)
    assert len(set(ranked.scores)) == 3  # real scores, not a constant
    explained = rewards.explain(prompt, replies)
    assert [p.score for p in explained.parts] == ranked.scores
    assert explained.p_top is not None and 0.5 <= explained.p_top <= 1.0
    assert "ranks the replies." in service.status()

    # a chat turn: the rank worker scores it with the ranker; the scores are stored
    provider = FakeProvider()
    repo = Repository.open()
    chat = chat_service(repo, rewards, provider)
    conversation = repo.conversations.create("t")
    asyncio.run(chat.send_messages(conversation.id, [Message("user", prompt)],
                                   params=SamplingParams(n=3)))
    stored = repo.conversations.list_turns(conversation.id)[-1].candidates
    assert [c.model_version for c in stored] == [TRANSFORMERS_RANKER_VERSION] * 3
    assert [c.score for c in stored] == pytest.approx(
        HFRanker.load(folder).score(prompt, [c.text for c in stored]), abs=1e-4)
    repo.close()

    # the tiny model, trained on the same data folder's pairs, beside it on a test file
    repo = Repository.open()
    datasets.import_file(repo, write_jsonl(Path("pairs.jsonl"), trained["rows"][:10]))
    repo.close()
    rewards.train_now()
    comparison = service.compare(str(folder), str(trained["work"] / "test.jsonl"))
    assert comparison.pairs == 4 and comparison.source == "the test file test.jsonl"
    assert comparison.ranker_accuracy is not None and comparison.tiny_accuracy is not None
    assert comparison.tiny_version == 1
    assert describe(comparison).startswith("On 4 pairs (the test file test.jsonl): "
                                           "transformers ranker ")


def test_a_ranker_whose_weights_do_not_load_falls_back_to_the_tiny_model(tmp_path):
    needs_tune_stack()
    from rlhf_desktop.services.ranking.rewards import RewardService

    base = next(TEST_CACHE.glob("base-models/*/config.json"), None)
    if base is None:
        pytest.skip("the dequantised base is not cached yet (the run above makes it)")
    broken = tmp_path / "broken"
    shutil.copytree(base.parent, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    cfg = json.loads((broken / "config.json").read_text())
    cfg.update(architectures=["LlamaForSequenceClassification"], num_labels=1)
    (broken / "config.json").write_text(json.dumps(cfg))
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    rewards = RewardService(embedder=HashEmbedder())  # type: ignore[arg-type]
    rewards.ranker.choose(str(broken))
    assert rewards.ranker.error is None  # the cheap check passes; loading fails later
    ranked = rewards.rank("Hello?", ["Hi!", "Go away."])
    assert ranked.version is None and ranked.scores == [0.0, 0.0]  # the (untrained) tiny model
    assert rewards.ranker.error is not None
    assert rewards.ranker.error.startswith("The transformers ranker is not used, the tiny "
                                           "model ranks instead: ")
    assert "could not be loaded as a reward model" in rewards.ranker.error
    assert rewards.rank("Hello?", ["Hi!", "Go away."]).version is None  # not retried per turn


def test_a_finished_run_started_again_registers_no_second_ranker(trained):
    assert trained["done"].returncode == 0, trained["done"].stderr[-2000:]
    env = {**os.environ, "RLHF_DESKTOP_HOME": str(trained["home"]),
           "RLHF_DESKTOP_CACHE": str(TEST_CACHE), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    again = subprocess.run([sys.executable, "-m", "rlhf_desktop.tune", "--config",
                            str(trained["work"] / "run.yaml")], capture_output=True, text=True,
                           timeout=110, cwd=trained["work"], env=env, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    events = [json.loads(line) for line in again.stdout.splitlines()
              if line.startswith('{"event"')]
    assert not [e for e in events if e["event"] == "step"]  # resumed at its last step
    assert events[-1]["ranker"] == "r0001" and not [e for e in events if e["event"] == "ranker"]
    assert sorted(p.name for p in (trained["home"] / "rankers").iterdir()) == ["r0001"]


def test_a_finished_dpo_run_started_again_trains_nothing(tmp_path):
    # The same resume defect as above, for method: dpo (it would make a second chat version).
    needs_tune_stack()
    pairs = write_jsonl(tmp_path / "pairs.jsonl", short_hh_rows(4))
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({**TINY, "data": str(pairs), "output_dir": str(tmp_path / "out"),
                               "max_steps": 1, "export_gguf": False}))
    env = {**os.environ, "RLHF_DESKTOP_CACHE": str(TEST_CACHE), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    runs = [subprocess.run([sys.executable, "-m", "rlhf_desktop.tune", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=limit, env=env, check=False)
            for limit in (80, 35)]  # the second run loads no model
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    steps = [[json.loads(line)["step"] for line in done.stdout.splitlines()
              if line.startswith('{"event": "step"')] for done in runs]
    assert steps == [[1], []]
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-1"]
    last = json.loads(runs[1].stdout.splitlines()[-1])
    assert last["event"] == "done" and last["status"] == "completed" and last["steps"] == 1
