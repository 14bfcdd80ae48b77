"""The win-rate benchmark's statistics helpers (benchmarks/_winrate.py) and its verdict."""

from __future__ import annotations

import pytest

from benchmarks._winrate import bootstrap_ci, mean_gain, outcomes, split_prompts, win_rate
from benchmarks.tune_winrate import markdown, verdict


def test_outcomes_count_a_tie_as_half() -> None:
    assert outcomes([2.0, 1.0, 3.0], [1.0, 2.0, 3.0]).tolist() == [1.0, 0.0, 0.5]


def test_win_rate_counts_wins_losses_and_ties() -> None:
    r = win_rate([1, 1, 1, 0, 5], [0, 0, 0, 1, 5])
    assert r["win_rate"] == 70.0
    assert (r["wins"], r["losses"], r["ties"], r["n"]) == (3, 1, 1, 5)
    assert r["ci95"][0] <= 70.0 <= r["ci95"][1]


def test_bootstrap_ci_is_seeded_and_narrows_with_more_prompts() -> None:
    few = [1.0, 0.0] * 10
    many = [1.0, 0.0] * 500
    assert bootstrap_ci(few, seed=3) == bootstrap_ci(few, seed=3)
    low_few, high_few = bootstrap_ci(few, resamples=2000)
    low_many, high_many = bootstrap_ci(many, resamples=2000)
    assert low_few < low_many < 0.5 < high_many < high_few
    assert bootstrap_ci([1.0] * 7) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_clear_winner_has_ci_above_half_and_a_coin_does_not() -> None:
    assert win_rate([1] * 45 + [0] * 15, [0] * 45 + [1] * 15)["ci95"][0] > 50
    coin = win_rate([1] * 30 + [0] * 30, [0] * 30 + [1] * 30)
    assert coin["ci95"][0] < 50 < coin["ci95"][1]


def test_mean_gain_is_paired() -> None:
    g = mean_gain([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])
    assert g == {"mean": 2.0, "ci95": [2.0, 2.0]}


def test_split_keeps_prompts_apart_and_is_seeded() -> None:
    keys = [f"p{i % 20}" for i in range(100)]
    train, held = split_prompts(keys, 5, seed=1)
    assert len(held) == 5 and len(train) == 15 and not train & held
    assert split_prompts(keys, 5, seed=1) == (train, held)
    assert split_prompts(keys, 5, seed=2) != (train, held)
    with pytest.raises(ValueError, match="only 20 distinct"):
        split_prompts(keys, 20, seed=1)


def _result(low: float, high: float) -> dict:
    w = {"win_rate": (low + high) / 2, "ci95": [low, high], "n": 60, "wins": 30,
         "losses": 30, "ties": 0}
    return {"set": "x.jsonl", "longer_chosen_share": 60.0, "prompts": 150,
            "train_prompts": 90, "train_pairs": 500, "held_out_prompts": 60,
            "tune": {"pairs_used": 192, "pairs_in_file": 192, "pairs_trained": 96, "steps": 12,
                     "left_out_prompt_too_long": 0,
                     "wall_s": 1200.0,
                     "load_avg_before": 2.0, "load_avg_after": 3.0, "cpu_s_per_pair": 4.0,
                     "peak_rss_mib": 3000, "first_step": {"loss": 0.69},
                     "last_step": {"loss": 0.6, "accuracy": None, "margin": 0.1}},
            "judge": {"held_out_accuracy": 65.0, "held_out_pairs": 300},
            "mean_score_gain": {"mean": 0.1, "ci95": [0.0, 0.2]},
            "noise_mean_score_gain": {"mean": 0.0, "ci95": [-0.1, 0.1]},
            "length_correlation": {"tuned_vs_base": {"score": 0.5, "content": 0.1},
                                   "base_other_seed_vs_base": {"score": 0.4, "content": 0.0}},
            "tuned_longer_share": 55.0, "identical_replies": 0,
            "cut_at_max_tokens": {"base": 1}, "tuned_vs_base": w,
            "noise_floor_base_vs_base": w, "content_only_tuned_vs_base": w,
            "content_only_noise_floor": w, "mean_words": {"base": 50.0, "tuned": 70.0}}


def test_verdict_says_met_only_when_the_whole_ci_is_above_half() -> None:
    assert verdict(_result(52, 70)) == "**met**"
    assert "no difference" in verdict(_result(40, 60))
    assert "worse" in verdict(_result(30, 45))
    text = markdown([_result(52, 70)], "cmd")
    assert "**met**" in text and "DPO loss 0.690 → 0.600" in text and "accuracy –" in text
