"""RM-amplified tuning: the reward model labels extra on-policy pairs only when it is accurate
enough, only its confident best-vs-worst, only among whole replies, and never into the
database (services/tuning/amplify.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf_desktop.core.formats import parse_record
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.services.tuning import amplify

PROMPT = (Message("system", "You are a helpful assistant."), Message("user", "Name a fruit."))


def by_length(_prompt: str, texts: list[str]) -> list[float]:
    """A judge that likes long replies (a stand-in for the user's reward model)."""
    return [float(len(t.split())) for t in texts]


def test_the_reward_model_labels_nothing_below_the_accuracy_threshold() -> None:
    assert not amplify.gate(None, None).open
    assert not amplify.gate(0.8, None).open
    low = amplify.gate(amplify.MIN_ACCURACY - 0.01, 3)
    assert not low.open and "your pairs only" in low.reason and "v3" in low.reason
    high = amplify.gate(amplify.MIN_ACCURACY, 3)
    assert high.open and "70%" in high.reason


def test_best_against_worst_among_whole_replies_marked_as_amplified() -> None:
    replies = [("An apple.", "stop"), ("A ripe red apple from the orchard.", "stop"),
               ("A pear is a fruit that grows on trees in many places " * 3, "length"),
               ("", None), ("Fig", "stop")]
    line = amplify.label(PROMPT, replies, by_length([], [t for t, _ in replies]), 0.5)
    assert line is not None
    assert line["source"] == "amplified"
    assert line["chosen"][0]["content"] == "A ripe red apple from the orchard."
    assert line["rejected"][0]["content"] == "Fig"  # the cut and the failed reply never compete
    pair = parse_record(line)  # a line the tune reads like any exported pair
    assert tuple(pair.prompt) == PROMPT and pair.chosen != pair.rejected


def test_identical_or_unsure_replies_make_no_pair() -> None:
    same = [("Canberra.", "stop"), ("canberra", "stop"), ("Sydney? No: it is Canberra", "length")]
    assert amplify.label(PROMPT, same, [2.0, 1.0, 5.0], 1.0) is None
    close = [("An apple.", "stop"), ("A pear.", "stop")]
    # P(best > worst) = sigmoid(0.1 / 1.0) = 0.52: below MIN_CONFIDENCE
    assert amplify.label(PROMPT, close, [1.1, 1.0], 1.0) is None
    assert amplify.label(PROMPT, close, [3.0, 1.0], 1.0) is not None
    with pytest.raises(ValueError):
        amplify.label(PROMPT, close, [1.0], 1.0)


def test_label_all_counts_what_it_left_out() -> None:
    prompts = [PROMPT, PROMPT, PROMPT]
    replies = [[("An apple.", "stop"), ("A ripe red apple from the orchard.", "stop")],
               [("Kiwi", "stop"), ("kiwi", "stop")],
               [("Plum.", "stop"), ("Pear.", "stop")]]
    lines, unsure, not_whole = amplify.label_all(prompts, replies, by_length, 1.0)
    assert (len(lines), unsure, not_whole) == (1, 1, 1)


def test_a_closed_gate_writes_a_report_and_no_pairs(tmp_path: Path) -> None:
    report = amplify.amplify(tmp_path, [PROMPT], SamplingParams(n=1), 0, accuracy=0.55,
                             reward_version=2, score=by_length, temperature=1.0)
    assert not report.used and report.pairs == 0
    assert not (tmp_path / amplify.FILE).exists()
    saved = amplify.load_report(tmp_path)
    assert saved is not None and saved.reason == report.reason
    assert report.words().startswith("Your pairs only")


@pytest.mark.slow
@pytest.mark.llama
def test_fresh_replies_of_the_built_in_model_become_labelled_pairs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real weights: the built-in model answers two past prompts again (4 replies each, in
    a child process), the judge labels best vs worst, the lines land in the run folder."""
    from rlhf_desktop import config

    pytest.importorskip("xllamacpp")
    if not config.default_gguf_path().is_file():
        pytest.skip("the built-in model's weights are not installed")
    home = tmp_path / "home"
    monkeypatch.setenv(config.paths.HOME_ENV, str(home))
    config.set_data_dir(str(home))
    run = tmp_path / "run"
    run.mkdir()
    prompts = [PROMPT, (Message("user", "Give one tip for sleeping well."),)]
    report = amplify.amplify(run, prompts, SamplingParams(n=1, temperature=1.0, max_tokens=80),
                             0, accuracy=0.9, reward_version=1, score=by_length,
                             temperature=0.1)
    assert report.prompts == 2 and report.replies == 8
    assert report.pairs + report.unsure + report.not_whole == 2 and report.pairs >= 1
    lines = [json.loads(x) for x in (run / amplify.FILE).read_text().splitlines()]
    assert len(lines) == report.pairs
    for line in lines:
        assert line["source"] == "amplified"
        chosen, rejected = line["chosen"][0]["content"], line["rejected"][0]["content"]
        assert len(chosen.split()) > len(rejected.split())  # the judge's best vs its worst


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.timeout(900)
def test_a_tune_with_amplification_adds_the_labelled_pairs_to_the_run_only(
        data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window's Tune with "Let my reward model label extra pairs": a reward model trained
    on the user's pairs (long, complete answers over one-liners) labels fresh built-in
    replies to past prompts; the lines join the run's pairs file, never the database."""
    from rlhf_desktop import config
    from rlhf_desktop.config import Settings
    from rlhf_desktop.domain import PreferencePair
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.services.tuning.service import TuningService
    from rlhf_desktop.storage.repo import Repository
    from tests.test_model_service import TOPICS
    from tests.test_tuning_service import FAST, SCRIPTED, until_state

    pytest.importorskip("xllamacpp")
    if not config.default_gguf_path().is_file():
        pytest.skip("the built-in model's weights are not installed")
    repo = Repository.open()
    try:
        repo.pairs.add([PreferencePair(
            prompt=(Message("user", f"How do I {t}? Explain."),),
            chosen=f"To {t}, start small and plan each step. Practise a little every day, "
                   "keep notes on what worked, and ask someone with experience for advice.",
            rejected="Just do it.") for t in TOPICS])
        stored = repo.pairs.count()
        version = RewardService().train_now()
    finally:
        repo.close()
    assert (version.cv_accuracy or 0) >= amplify.MIN_ACCURACY, version.cv_accuracy
    monkeypatch.setattr(amplify, "PROMPTS", 3)  # three past prompts answered again
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.05")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    service = TuningService(data_home, lambda: Settings(max_tokens=80), overrides=FAST,
                            module=SCRIPTED)
    service.amplify = True
    try:
        service.start()
        snap = until_state(service, "done", "failed", timeout=800)
    finally:
        service.close()
    assert snap.state == "done", snap.message
    run = Path(snap.run_dir)
    report = amplify.load_report(run)
    assert report is not None and report.prompts == 3 and report.replies == 12
    lines = [json.loads(x) for x in (run / "pairs.jsonl").read_text().splitlines()]
    extra = [x for x in lines if x.get("source") == amplify.SOURCE]
    assert len(lines) == stored + report.pairs and len(extra) == report.pairs
    repo = Repository.open()
    try:
        assert repo.pairs.count() == stored  # the database holds the user's pairs only
    finally:
        repo.close()
