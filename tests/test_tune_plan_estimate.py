"""The tune panel's plan before a run: it counts only the pairs the run will use (with how
many cannot be used, and why), and its time estimate comes from the user's own last run,
measured correctly (the steps' own durations over the pairs they trained on), also for a run
that was cancelled and resumed. It says "1 step" in the singular."""

from __future__ import annotations

import json
from pathlib import Path

from rlhf_desktop.services.tuning import state as tuning_state
from rlhf_desktop.services.tuning.state import TunePlan, make_plan, seconds_per_pair
from rlhf_desktop.tune.progress import Progress
from rlhf_desktop.tune.runs import runs_dir
from rlhf_desktop.tune.versions import chat_models_dir, register

CONFIG = {"batch_size": 2, "grad_accum": 4}


def _resumed_run(run: Path) -> None:
    """15 pairs, 2 steps of about 12 s a pair: step 1, a cancel, then a resume that trained
    step 2 (its process, the one that made the version, ran 60 s in all)."""
    progress = Progress(run / "progress.jsonl")
    progress.emit("start", pid=1, config=CONFIG)
    progress.emit("stage", stage="training", resume_from=None, trainer_pairs=15)
    progress.emit("step", step=1, max_steps=2, epoch=0.53, seconds=96.0)
    progress.emit("checkpoint", step=1)
    progress.emit("done", status="cancelled", steps=1, max_steps=2)
    progress.emit("start", pid=2, config=CONFIG)
    progress.emit("stage", stage="training", resume_from="checkpoint-1", trainer_pairs=15)
    progress.emit("step", step=2, max_steps=2, epoch=1.0, seconds=84.0)
    progress.emit("done", status="completed", steps=2, max_steps=2, version=1, seconds=60.0)
    progress.close()


def test_the_estimate_comes_from_the_last_runs_own_steps(data_home: Path) -> None:
    run = runs_dir(data_home) / "20261206-080000"
    run.mkdir(parents=True)
    _resumed_run(run)
    adapter = run / "adapter.gguf"
    adapter.write_bytes(b"not read here")
    register(adapter, {"kind": "lora", "steps": 2, "seconds": 60.0, "run_dir": str(run),
                       "pairs": {"used": 15}, "settings": CONFIG})
    assert (chat_models_dir() / "v0001").is_dir()
    rate, basis = seconds_per_pair()  # (96 + 84) s / 15 pairs
    assert 11.5 < rate < 12.5 and basis == "12 s a pair in your run v1", basis
    plan = make_plan(43, {}, None, None)
    assert plan.estimate_s is not None and plan.estimate_s > 43 * 11.5
    assert tuning_state.run_rate(run) == rate


def test_the_plan_counts_only_the_pairs_that_fit_and_says_why_the_others_do_not(
        data_home: Path) -> None:
    fit = {"pairs": 43, "used": 40, "max_length": 256,
           "dropped_prompt_too_long": [{"line": n} for n in (3, 9, 17)],
           "context_cut": [{"line": n} for n in range(20, 45)], "truncated": []}
    plan = make_plan(43, {}, None, None, fit)
    # the default recipe: 2 epochs of batches of 8: ceil(2 × 40 / 8), not ceil(2 × 43 / 8) = 11
    assert plan.pairs == 40 and plan.steps == 10
    text = plan.text()
    # the estimate is seconds a pair × the pairs seen, so the plan says how many are seen
    assert text.startswith("40 of your 43 preference pairs, 10 steps (80 pairs in all: each "
                           "pair twice), about "), text
    budget = make_plan(657, {}, None, None).text()  # 300 picks: a run sees 240 of them
    assert budget.startswith("657 preference pairs, 30 steps (240 pairs in all: a run's "
                             "budget), about "), budget
    steps = make_plan(657, {"max_steps": 10}, None, None).text()  # the cap is the steps set
    assert steps.startswith("657 preference pairs, 10 steps (80 pairs in all: the steps "
                            "set), about "), steps
    assert ("3 pairs cannot be used: the system prompt and the last message alone are "
            "longer than the length limit (256 tokens)") in text
    assert "25 from later turns of a chat are used with their earliest turns cut" in text
    nothing = make_plan(2, {}, None, None, {"pairs": 2, "used": 0,
                                             "dropped_prompt_too_long": [{}, {}]})
    assert nothing.blocker is not None and "None of your 2 pairs fits" in nothing.blocker
    json.dumps(fit)  # the report is what the data command prints



def test_tune_plan_says_one_step_in_the_singular() -> None:
    assert TunePlan(4, 1, 200.0, "measured").text().startswith(
        "4 preference pairs, 1 step, about ")
    assert TunePlan(1, 1, None, "").text() == "1 preference pair, 1 step"
    assert TunePlan(8, 2, None, "").text() == "8 preference pairs, 2 steps"


def test_tune_plan_while_measuring_ends_with_the_ellipsis_not_an_ellipsis_and_a_full_stop(
        ) -> None:
    measuring = TunePlan(43, 6, None, "", checking=True).text()
    assert measuring == ("43 preference pairs, 6 steps. "
                         "Measuring which pairs fit the length limit…"), measuring
    with_notes = TunePlan(40, 5, None, "", stored=43, left_out=3, max_length=256,
                          checking=True, cut_pairs=2).text()
    assert with_notes.endswith("length limit…") and "…." not in with_notes, with_notes
    done = TunePlan(40, 5, None, "", stored=43, left_out=3, max_length=256).text()
    assert done.endswith("(256 tokens).") and "…" not in done, done
