"""The measured effect of a tuned version, in its parts: the user's past prompts, the win
rate over prompts with its bootstrap interval, the ranker's agreement with the user's blind
picks (scores stored before the pick), and the sentence the model page shows."""

from __future__ import annotations

from pathlib import Path

from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.services.tuning.effect import (
    Effect,
    blind_agreement,
    effect_words,
    load_effect,
    past_prompts,
    win_rate,
)
from rlhf_desktop.storage.repo import Repository
from tests.helpers import make_turn


def test_past_prompts_are_the_newest_distinct_ones() -> None:
    pairs = [PreferencePair(prompt=(Message("user", f"q{i % 5}"),), chosen="a", rejected="b")
             for i in range(12)]
    prompts = past_prompts(pairs, limit=3)
    assert [p[-1].content for p in prompts] == ["q1", "q0", "q4"]


def test_win_rate_counts_ties_half_and_its_interval_holds_it() -> None:
    wins, losses, ties, rate, low, high = win_rate([2, 2, 2, 0, 1, 1], [1, 1, 1, 1, 1, 3])
    assert (wins, losses, ties) == (3, 2, 1) and rate == 3.5 / 6
    assert low is not None and high is not None and 0 <= low < rate < high <= 1
    assert win_rate([1.0], [0.0])[3:] == (1.0, None, None)  # one prompt: no interval


def test_blind_agreement_uses_the_scores_shown_before_the_pick(data_home: Path) -> None:
    repo = Repository.open()
    try:
        for agreed, blind in ((True, True), (False, True), (True, True), (False, False)):
            turn = make_turn(repo, ["one", "two"])
            a, b = turn.candidates
            repo.conversations.set_scores([(a.id, 1.0, 1), (b.id, 0.0, 1)])
            repo.conversations.record_display(turn.id, blind, {a.id: 0, b.id: 1})
            repo.labels.pick(turn.id, a.id if agreed else b.id)
        pairs = repo.provenance.with_metadata(repo.pairs.list_all())
    finally:
        repo.close()
    rate, n = blind_agreement(pairs)
    assert n == 3 and rate == 2 / 3  # the shown (not blind) turn is not counted


def test_the_sentence_says_the_effect_its_interval_and_its_caveat(tmp_path: Path) -> None:
    effect = Effect(version=2, prompts=40, wins=27, losses=12, ties=1, rate=0.6875,
                    low=0.58, high=0.77, ranker="reward model v4", agreement=0.71,
                    agreement_pairs=35, agreement_basis="blind")
    words = effect_words(effect)
    assert words.startswith("Chat model v2 (tuned) wins 69 % (58–77 %) against the base on 40 "
                            "of your past "
                            "prompts"), words
    assert "judged by your reward model v4, which agrees with your blind picks 71 %" in words
    assert "not you" in words and "Try chat model v2 (tuned) blind against the base" in words
    assert "no better than chance" not in words
    (tmp_path / "effect.json").write_text("{broken", encoding="utf-8")
    assert load_effect(tmp_path) is None


def test_the_sentence_says_when_its_judge_is_no_better_than_chance() -> None:
    effect = Effect(version=1, prompts=7, wins=1, losses=6, ties=0, rate=1 / 7, low=0.0,
                    high=0.43, ranker="reward model v1", agreement=0.11, agreement_pairs=13,
                    agreement_basis="cv")
    words = effect_words(effect)
    assert ("agrees with your picks 11 % of the time (cross-validated; too few blind picks to "
            "check it on those): no better than chance (a coin agrees 50 % of the time), so "
            "this figure says nothing about the tuned model yet") in words, words


def test_a_measurement_runs_in_a_child_and_says_why_it_failed(data_home: Path) -> None:
    """The service's measurement: a real low-priority child process; with no past prompts
    it ends before loading any model and the panel's line says why."""
    import time

    from rlhf_desktop.config import Settings
    from rlhf_desktop.services.tuning.service import TuningService
    from rlhf_desktop.tune.versions import register

    adapter = data_home / "adapter.gguf"
    adapter.write_bytes(b"never loaded: there is nothing to measure")
    register(adapter, {"kind": "lora", "steps": 1})
    service = TuningService(data_home, Settings)
    try:
        assert service.measure_effect(1, prompts=3)
        assert service.effect_status()[0] == 1
        assert not service.measure_effect(1)  # one at a time
        deadline = time.monotonic() + 60
        while service.effect_status()[0] is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the follower's last words
        measuring, note = service.effect_status()
        assert measuring is None
        assert note.startswith("Measuring chat model v1 (tuned) failed: there are no past "
                               "prompts"), note
        assert service.effect(1) is None
    finally:
        service.close()
