import json

import pytest

from rlhf_desktop.tune.options import LORA_TARGETS, TuneConfig, TuneConfigError, load_config


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_config_relative_paths_are_taken_from_the_file(tmp_path):
    path = write(tmp_path, "run.json", json.dumps(
        {"data": "pairs.jsonl", "output_dir": "out", "max_length": 128, "max_steps": 2,
         "lora_targets": "q_proj, v_proj", "learning_rate": 1}))
    with pytest.raises(TuneConfigError, match="learning_rate"):
        load_config(path)
    path.write_text(json.dumps({"data": "pairs.jsonl", "output_dir": "out", "max_length": 128,
                                "max_steps": 2, "lora_targets": "q_proj, v_proj"}))
    cfg = load_config(path)
    assert cfg.data == str(tmp_path / "pairs.jsonl")
    assert cfg.output_dir == str(tmp_path / "out")
    assert cfg.lora_targets == ["q_proj", "v_proj"]
    assert (cfg.max_length, cfg.max_steps, cfg.method) == (128, 2, "dpo")


def test_yaml_config_and_overrides(tmp_path):
    path = write(tmp_path, "run.yaml", "data: /abs/pairs.jsonl\noutput_dir: out\n"
                                       "beta: 0.2\nlearning_rate: 1.0e-4\n")
    cfg = load_config(path, {"max_steps": 7})
    assert cfg.data == "/abs/pairs.jsonl"
    assert (cfg.beta, cfg.learning_rate, cfg.max_steps) == (0.2, 1e-4, 7)


@pytest.mark.parametrize("data, message", [
    ({"data": "p", "output_dir": "o", "max_lenght": 5}, "unknown key.*max_lenght.*max_length"),
    ({"output_dir": "o"}, "'data' is required"),
    ({"data": "p"}, "'output_dir' is required"),
    ({"data": "p", "output_dir": "o", "method": "ppo"}, "method 'ppo' is not supported"),
    ({"data": "p", "output_dir": "o", "max_steps": "2"}, "'max_steps' must be a whole number"),
    ({"data": "p", "output_dir": "o", "max_length": 8}, "at least 32"),
    ({"data": "p", "output_dir": "o", "bf16": "yes"}, "true or false"),
    ({"data": "p", "output_dir": "o", "batch_size": 0}, "'batch_size' must be"),
    ({"data": "p", "output_dir": "o", "beta": 0}, "'beta' must be positive"),
])
def test_bad_settings_name_the_key(data, message):
    with pytest.raises(TuneConfigError, match=message):
        TuneConfig.from_mapping(data)


def test_unreadable_files_say_why(tmp_path):
    with pytest.raises(TuneConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    with pytest.raises(TuneConfigError, match=r"not valid JSON.*line 1"):
        load_config(write(tmp_path, "bad.json", "{data: 1"))
    with pytest.raises(TuneConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "bad.yaml", "a: [1\n"))
    with pytest.raises(TuneConfigError, match="one mapping"):
        load_config(write(tmp_path, "list.json", "[1, 2]"))


def test_dpo_defaults_are_the_loop_benchmarks_recipe_and_reward_keeps_its_own() -> None:
    dpo = TuneConfig.from_mapping({"data": "p.jsonl", "output_dir": "run"})
    assert dpo.lora_targets == list(LORA_TARGETS) and dpo.learning_rate == 2e-4
    assert (dpo.lr_scheduler, dpo.warmup_ratio, dpo.epochs, dpo.pair_budget) == (
        "cosine", 0.1, 2.0, 240)
    reward = TuneConfig.from_mapping({"data": "p.jsonl", "output_dir": "run",
                                      "method": "reward", "epochs": 3})
    assert reward.lora_targets == ["q_proj", "v_proj"] and reward.learning_rate == 5e-4
    assert reward.epochs == 3.0 and reward.pair_budget == 0  # what the user gives still wins
