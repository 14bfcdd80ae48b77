"""``method: reward`` without training: its settings, the held-out split, the rankers folder,
and the fallback to the tiny model when the chosen ranker folder is unusable (no torch here;
the real runs are in test_reward_trainer.py)."""

import json
from pathlib import Path

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import ConfigError, Settings
from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.reward.hf_ranker import META_FILE, encode
from rlhf_desktop.reward.model import pair_key
from rlhf_desktop.reward.rankers import list_rankers, register
from rlhf_desktop.services.ranking.evaluation import RankerEvalService
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.tune import data as tune_data
from rlhf_desktop.tune.options import TuneConfigError, load_config
from tests.fakes import HashEmbedder
from tests.helpers import write_jsonl


def fake_ranker_folder(path: Path, arch: str = "LlamaForSequenceClassification",
                       meta: dict | None = None) -> Path:
    """A folder that passes the cheap checks (config.json, ranker.json); no weights."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": [arch]}))
    (path / META_FILE).write_text(json.dumps(meta or {"max_length": 64}))
    return path


def test_method_reward_reads_its_keys_and_refuses_bad_ones(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({
        "method": "reward", "data": "pairs.jsonl", "eval_data": "test.jsonl",
        "output_dir": "out", "lora": False, "eval_share": 0.25}))
    cfg = load_config(tmp_path / "run.json")
    assert (cfg.method, cfg.lora, cfg.eval_share, cfg.register) == ("reward", False, 0.25, True)
    assert cfg.eval_data == str(tmp_path / "test.jsonl")
    with pytest.raises(TuneConfigError, match=r"'lora: false'.*method 'reward'"):
        load_config(tmp_path / "run.json", {"method": "dpo"})
    with pytest.raises(TuneConfigError, match="eval_share"):
        load_config(tmp_path / "run.json", {"eval_share": 1})
    with pytest.raises(TuneConfigError, match="use one of dpo, reward"):
        load_config(tmp_path / "run.json", {"method": "ppo"})


def conversation(first: str, turns: int) -> list[dict]:
    rows = []
    prompt = f"Human: {first}"
    for i in range(turns):
        rows.append({"prompt": prompt, "chosen": f"yes {i}", "rejected": f"no {i}"})
        prompt += f"\n\nAssistant: yes {i}\n\nHuman: and then {i}?"
    return rows


def test_the_held_out_split_keeps_each_conversation_on_one_side(tmp_path):
    rows = [r for n in range(12) for r in conversation(f"topic {n}", 1 + n % 3)]
    records = tune_data.read_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    train, held = tune_data.split_by_prompt(records, 0.25, seed=7)
    assert len(train) + len(held) == len(records) == 24
    assert 6 <= len(held) <= 9
    train_groups = {tune_data.prompt_group(r) for r in train}
    assert not train_groups & {tune_data.prompt_group(r) for r in held}
    assert tune_data.split_by_prompt(records, 0.25, seed=7) == (train, held)
    assert tune_data.split_by_prompt(records, 0.0, seed=7) == (records, [])
    one = [r for r in records if "topic 2" in r["prompt"][0]["content"]]
    assert tune_data.split_by_prompt(one, 0.5, seed=7) == (one, [])  # never all held out


def test_a_records_key_is_the_apps_pair_key(tmp_path):
    rows = conversation("Plan a trip", 2)
    records = tune_data.read_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    pair = PreferencePair(prompt=(Message("user", "Plan a trip"), Message("assistant", "yes 0"),
                                  Message("user", "and then 0?")),
                          chosen="yes 1", rejected="no 1")
    assert tune_data.record_key(records[1]) == pair_key(pair.prompt_text, pair.chosen,
                                                         pair.rejected)


class CharTokenizer:
    """Stands in for a tokenizer without a chat template: one id per character."""

    chat_template = None
    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}


def test_encode_cuts_from_the_left_so_the_reply_stays():
    ids, cut = encode(CharTokenizer(), "a long question " * 5, "the reply", 20)
    assert cut and len(ids) == 20
    assert "".join(chr(i) for i in ids[:-1]).endswith("stant: the reply")
    ids, cut = encode(CharTokenizer(), "hi", "ok", 100)
    assert not cut and "".join(chr(i) for i in ids[:-1]) == "User: hi\n\nAssistant: ok"


def test_rankers_are_numbered_in_the_data_folder(tmp_path):
    first = register(fake_ranker_folder(tmp_path / "a"))
    second = register(fake_ranker_folder(tmp_path / "b"), move=True)
    assert (first.name, second.name) == ("r0001", "r0002")
    assert not (tmp_path / "b").exists() and (tmp_path / "a").exists()
    (config.data_dir() / "rankers" / "r0003").mkdir()  # half-written: no ranker.json
    assert [r.name for r in list_rankers()] == ["r0001", "r0002"]


def test_an_unusable_ranker_folder_falls_back_to_the_tiny_model_with_a_message(tmp_path):
    service = RewardService(embedder=HashEmbedder())
    for folder, why in ((tmp_path / "missing", "does not exist"),
                        (fake_ranker_folder(tmp_path / "chat", "LlamaForCausalLM"),
                         "not a reward model"),
                        (tmp_path, "no config.json")):
        service.ranker.choose(str(folder))
        ranked = service.rank("How do I boil an egg?", ["Boil it 8 minutes.", "No."])
        assert ranked.version is None and ranked.scores == [0.0, 0.0]  # the untrained tiny
        assert service.ranker.error is not None
        assert service.ranker.error.startswith("The transformers ranker is not used, the "
                                               "tiny model ranks instead:")
        assert why in service.ranker.error
        assert service.scoring_version is None


def test_choosing_a_ranker_saves_the_setting_and_refuses_a_folder_that_is_not_one(tmp_path):
    rewards = RewardService(embedder=HashEmbedder())
    applied: list[Settings] = []
    current = {"settings": config.load_settings()}

    def apply(settings: Settings) -> None:
        current["settings"] = settings
        applied.append(settings)

    service = RankerEvalService(rewards, lambda: current["settings"], apply)
    good = register(fake_ranker_folder(tmp_path / "good", meta={
        "max_length": 64, "base": {"name": "SmolLM2.gguf"}, "pairs": {"used": 40},
        "steps": 5, "held_out": {"pairs": 10, "accuracy": 0.7}}))
    [info] = service.rankers()
    assert (info.name, info.base, info.trained_pairs, info.held_out_accuracy, info.in_use) == (
        "r0001", "SmolLM2.gguf", 40, 0.7, False)
    assert service.status() == "The tiny model ranks the replies."

    service.use(str(good.folder))
    assert config.load_settings().ranker == str(good.folder.resolve())
    assert applied[-1].ranker == str(good.folder.resolve())
    assert rewards.ranker.wanted == str(good.folder.resolve())
    assert service.rankers()[0].in_use
    assert "ranks the replies (it loads with the next turn)" in service.status()

    with pytest.raises(ConfigError, match="not a reward model"):
        service.use(str(fake_ranker_folder(tmp_path / "chat", "LlamaForCausalLM")))
    assert config.load_settings().ranker == str(good.folder.resolve())  # nothing changed
    assert len(applied) == 1

    service.use("")
    assert config.load_settings().ranker == "" and rewards.ranker.wanted == ""
    assert service.status() == "The tiny model ranks the replies."
