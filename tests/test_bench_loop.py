"""The on-policy loop benchmark (benchmarks/loop.py): its tastes and guards, and one real tiny
run end to end (the built-in model through the app, real SQLite, one tune step, a taste
loaded from a file outside the project)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import loop, loop_tastes
from benchmarks.loop_tastes import Guards, guarded_scores
from rlhf_desktop.tune.options import TuneConfig, TuneConfigError
from rlhf_desktop.tune.train import budget_steps


def test_concise_prefers_about_fifty_words() -> None:
    assert loop_tastes.concise("q", "word " * 50) > loop_tastes.concise("q", "word " * 120)
    assert loop_tastes.concise("q", "word " * 45) > loop_tastes.concise("q", "word " * 5)


def test_structured_wants_a_list_only_for_several_parts() -> None:
    prose = "First do this. Then do that. Finally check it. And rest."
    listed = "Steps:\n- do this\n- do that\n- check it\n- rest"
    assert loop_tastes.structured("q", listed) > loop_tastes.structured("q", prose)
    assert loop_tastes.structured("q", "Paris.") == 0.5


def test_no_hedging_and_warm() -> None:
    assert loop_tastes.no_hedging("q", "Paris is the capital.") == 0
    assert loop_tastes.no_hedging("q", "I'm sorry, as an AI I might not know.") < -2
    assert loop_tastes.warm("q", "Great question! I'm glad you asked, good luck!") > \
        loop_tastes.warm("q", "Unfortunately that is wrong and not possible.")


def test_a_degenerate_reply_never_wins() -> None:
    guards = Guards(embed=lambda texts: np.zeros((len(texts), 2)), floor=0.15)
    sim = np.array([0.9, 0.9, 0.01])
    bad = guards.degenerate(["fine", "cut", "off"], ["stop", "length", "stop"], sim)
    assert bad == [False, True, True]
    scores = guarded_scores(lambda p, r: -1e9, "q", ["fine", "cut", "off"], bad)
    assert scores[0] > scores[1] and scores[1] == scores[2]


def test_gold_noise_is_fixed_per_text_and_sized_for_flips() -> None:
    assert loop_tastes.noise("p", "r", 1.0) == loop_tastes.noise("p", "r", 1.0)
    assert loop_tastes.noise("p", "r", 1.0) != loop_tastes.noise("p", "s", 1.0)
    sigma = loop_tastes.sigma_for_flips(np.array([1.0, -1.0, 1.0]), flip=0.25)
    flips = np.mean([loop_tastes.noise("p", f"a{i}", sigma) - loop_tastes.noise("p", f"b{i}", sigma)
                     > 1.0 for i in range(4000)])
    assert 0.2 < flips < 0.3


def test_external_taste_loads_from_any_file(tmp_path: Path) -> None:
    file = tmp_path / "mine.py"
    file.write_text("def short(prompt, reply):\n    return -len(reply)\n", encoding="utf-8")
    name, fn = loop_tastes.load_external(f"{file}:short")
    assert name == "mine:short" and fn("q", "ab") > fn("q", "abcd")
    with pytest.raises(ValueError):
        loop_tastes.load_external(f"{file}:missing")


def test_the_validation_taste_prefers_short_sentences_and_simple_words() -> None:
    """``readable`` (benchmarks/validation_tastes.py, loaded as an external taste): Flesch
    reading ease, so plain short sentences beat long ones in long words, whatever the length."""
    file = Path(loop.__file__).with_name("validation_tastes.py")
    name, readable = loop_tastes.load_external(f"{file}:readable")
    assert name == "validation_tastes:readable"
    plain = "Drink water. Sleep well. Walk each day. Eat fruit and greens."
    dense = ("Maintaining adequate hydration, consistent circadian regularity and "
             "considerable cardiovascular activity substantially improves physiological "
             "resilience.")
    assert readable("Tips?", plain) > readable("Tips?", dense)
    assert readable("Tips?", plain + " " + plain) == pytest.approx(readable("Tips?", plain),
                                                                   abs=5)
    assert readable("Tips?", "") < readable("Tips?", dense)


def test_the_second_validation_taste_wants_examples_and_figures_not_length() -> None:
    """``concrete``: examples and figures per 100 words, so a reply with them beats one
    without, and repeating a reply (twice the length, the same density) gains nothing."""
    file = Path(loop.__file__).with_name("validation_tastes.py")
    name, concrete = loop_tastes.load_external(f"{file}:concrete")
    assert name == "validation_tastes:concrete"
    vague = "Saving money is good. Spend less than you earn and keep at it over time."
    specific = ("Save a part of each paycheck, for example by moving some money to savings on "
                "payday, and then cut one regular cost that you do not need, and keep doing it "
                "every month for a year.")  # 1 marker in 36 words: under the cap of 10
    assert concrete("How to save?", specific) == pytest.approx(100 / 36)
    assert concrete("How to save?", specific) > concrete("How to save?", vague) == 0
    assert concrete("How to save?", specific + " " + specific) == pytest.approx(
        concrete("How to save?", specific))
    assert concrete("How to save?", "") < concrete("How to save?", vague)


def test_split_keeps_held_out_fixed_when_picks_grow() -> None:
    prompts = [f"prompt number {i}" for i in range(50)]
    t1, h1 = loop.split(prompts, 10, 5, seed=3)
    t2, h2 = loop.split(prompts, 30, 5, seed=3)
    assert h1 == h2 and t2[:10] == t1 and not set(t2) & set(h2)


PROMPTS = ["What is the capital of France? One short sentence.",
           "Name a primary colour. Answer in a few words.",
           "What is 2 + 2? Answer briefly.",
           "Say hello in Spanish, in a few words.",
           "What animal says moo? Answer briefly.",
           "What colour is the sky on a clear day? Answer briefly.",
           "How many legs does a cat have? Answer briefly.",
           "What is the opposite of hot? One word."]


def test_tunes_and_amplification_can_be_chosen_per_pick_budget() -> None:
    args = loop.parse_args(["--picks", "100", "300", "--tune-tastes", "concise", "warm@300"])
    assert loop.chosen(args.tune_tastes, "concise", 100)
    assert loop.chosen(args.tune_tastes, "concise", 300)
    assert loop.chosen(args.tune_tastes, "warm", 300)
    assert not loop.chosen(args.tune_tastes, "warm", 100)
    assert not loop.chosen(args.tune_tastes, "structured", 300)
    assert loop.chosen([], "anything", 7)  # nothing named: every taste, every budget
    args = loop.parse_args(["--picks", "100", "300", "--recipes", "new", "defaults",
                            "--tune-tastes", "concise", "warm@300",
                            "--defaults-tastes", "concise@100"])
    assert loop.recipe_chosen(args, "new", "concise", 300)
    assert loop.recipe_chosen(args, "defaults", "concise", 100)
    assert not loop.recipe_chosen(args, "defaults", "concise", 300)
    assert not loop.recipe_chosen(args, "defaults", "warm", 300)  # arm 4 narrowed to concise


def test_the_rule_alone_arm_takes_the_first_reply_that_finished() -> None:
    pool = [[{"text": "cut one", "finish": "length"}, {"text": "done", "finish": "stop"},
             {"text": "done too", "finish": "stop"}],
            [{"text": "all cut", "finish": "length"}, {"text": "cut too", "finish": "length"}],
            [{"text": "", "finish": "stop"}, {"text": "cut", "finish": "length"}]]
    assert [r["text"] for r in loop.finished_first(pool)] == ["done", "all cut", "cut"]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~150 CPU-s (two one-step tunes in subprocesses); minutes when busy
def test_tiny_loop_run_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "prompts.jsonl").write_text("".join(
        json.dumps({"prompt": p, "chosen": "a", "rejected": "b"}) + "\n" for p in PROMPTS),
        encoding="utf-8")
    taste = tmp_path / "elsewhere" / "my_taste.py"
    taste.parent.mkdir()
    taste.write_text('def short(prompt, reply):\n    """Answer in as few words as you can."""\n'
                     "    return -len(reply.split())\n", encoding="utf-8")
    out = tmp_path / "loop.json"
    loop.main(["--taste", f"{taste}:short", "--picks", "5", "--held-out", "3",
               "--max-tokens", "64", "--max-steps", "1", "--quick", "--no-gold",
               "--data", str(data), "--work", str(tmp_path / "work"),
               "--out-file", str(out), "--nice", "0",
               "--arms", "system", "rm", "tuned", "amplified"])
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["prompts"] == {"distinct": 8, "held_out": 3}
    rec = result["tastes"]["my_taste:short"]["picks"]["5"]
    assert result["tastes"]["my_taste:short"]["description"] == "Answer in as few words as you can."
    assert rec["labels"] + rec["skipped_all_degenerate"] == 5 and rec["pairs"] > 0
    assert rec["exported_pairs"] == rec["pairs"]
    assert rec["tunes"]["new"]["steps"] == 1
    amp = rec["amplification"]  # arm 6 went through the app's gate (5 picks: rarely open)
    assert amp["reason"] and amp["used"] == (amp["pairs"] > 0)
    amplified = {"tuned_new_amplified"} if amp["used"] else set()
    assert set(rec["arms"]) == {"base", "system", "noise", "finished_first", "taste_best_of_4",
                                "rm_best_of_4", "tuned_new", *amplified}
    for arm, a in rec["arms"].items():
        assert set(a["guards"]) == {"mean_words", "cut_share", "distinct_2", "on_topic_share",
                                    "hh_rm_score"}
        if arm != "base":
            w = a["vs_base"]
            assert w["n"] == 3 and w["wins"] + w["losses"] + w["ties"] == 3
            assert w["ci95"][0] <= w["win_rate"] <= w["ci95"][1]


def test_recipe_options_are_checked() -> None:
    base = {"data": "p.jsonl", "output_dir": "run"}
    cfg = TuneConfig.from_mapping({**base, "loss_type": "sigmoid,sft", "loss_weights": [1, 0.5],
                                   "lr_scheduler": "cosine", "warmup_ratio": 0.1})
    assert cfg.loss_type == ["sigmoid", "sft"] and cfg.lr_scheduler == "cosine"
    for bad in ({"loss_type": ["dpo"]}, {"loss_type": ["sigmoid"], "loss_weights": [1, 2]},
                {"lr_scheduler": "sometimes"}, {"warmup_ratio": 1.5}, {"pair_budget": -1}):
        with pytest.raises(TuneConfigError):
            TuneConfig.from_mapping({**base, **bad})


def test_pair_budget_caps_the_steps_only_when_the_epochs_would_exceed_it() -> None:
    cfg = TuneConfig(data="p", output_dir="o", epochs=2.0, batch_size=2, grad_accum=4,
                     pair_budget=400)
    assert budget_steps(cfg, 100) == 0  # 2 epochs of 100 pairs = 200 pairs: the epochs decide
    assert budget_steps(cfg, 900) == 50  # 1,800 pairs capped at 400 = 50 steps of 8
    cfg.max_steps = 7
    assert budget_steps(cfg, 900) == 7
    assert budget_steps(TuneConfig(data="p", output_dir="o", pair_budget=0), 900) == 0
    assert budget_steps(TuneConfig(data="p", output_dir="o"), 900) == 30  # default: 240 pairs
