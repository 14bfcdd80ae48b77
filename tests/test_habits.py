"""The bias report: picks by display position against 1/N with a binomial
test (turns of different N included), the longest reply against chance, agreement blind
against shown with Fisher's exact test, and the time to pick; from a real SQLite file."""

from __future__ import annotations

from math import comb

import pytest

from rlhf_desktop.domain import Shown
from rlhf_desktop.services.labels.habits import habits, p_words, position_report
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.storage.repo import Repository
from tests.helpers import make_turn


def two_sided_binomial_p(k: int, n: int, p: float) -> float:
    """The exact two-sided binomial p-value written out: the probability of every count at
    most as likely as the one observed (what scipy.stats.binomtest computes)."""
    pmf = [comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(n + 1)]
    return min(1.0, sum(q for q in pmf if q <= pmf[k] * (1 + 1e-7)))


def test_position_shares_and_binomial_p_values_for_one_number_of_cards() -> None:
    # 40 picks among 4 cards: 17 on the first, 9, 8, 6 on the others
    picks = [(0, 4)] * 17 + [(1, 4)] * 9 + [(2, 4)] * 8 + [(3, 4)] * 6
    report = position_report(picks)
    assert [s.picks for s in report.shares] == [17, 9, 8, 6]
    assert [s.turns for s in report.shares] == [40] * 4
    assert all(s.chance == 0.25 for s in report.shares)
    first = report.shares[0]
    assert first.share == pytest.approx(17 / 40)
    assert first.p_value == pytest.approx(two_sided_binomial_p(17, 40, 0.25), rel=1e-6)
    assert first.p_value < 0.05 < report.shares[1].p_value
    assert report.words == (f"you picked the first card 42% of the time (chance 25%, "
                            f"{p_words(first.p_value)}, 40 picks): more often than chance")
    assert "exact two-sided binomial test" in report.note


def test_turns_with_different_numbers_of_cards_count_only_where_the_position_was_shown() -> None:
    # 20 picks of 2 cards (12 on the first) and 20 of 4 cards (8 first, 2 on the third)
    picks = ([(0, 2)] * 12 + [(1, 2)] * 8
             + [(0, 4)] * 8 + [(1, 4)] * 6 + [(2, 4)] * 2 + [(3, 4)] * 4)
    report = position_report(picks)
    first, second, third, fourth = report.shares
    assert (first.picks, first.turns) == (20, 40)
    assert first.chance == pytest.approx((20 * 0.5 + 20 * 0.25) / 40)  # mean 1/N: 37.5%
    assert first.p_value == pytest.approx(two_sided_binomial_p(20, 40, 0.375), rel=1e-6)
    assert (second.picks, second.turns) == (14, 40)
    assert (third.picks, third.turns, third.chance) == (2, 20, 0.25)  # 4-card turns only
    assert (fourth.picks, fourth.turns) == (4, 20)
    assert report.card_counts == (2, 4)
    assert "turns of 2, 4 cards" in report.note and "conservative" in report.note
    assert position_report([]).words == "no picks with recorded card positions yet"


def test_the_report_from_the_database_tests_each_habit(data_home: object) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    long_reply = "A long and careful answer with several words in it."
    for k in range(24):
        turn = make_turn(repo, ["Yes.", long_reply, "No.", "Maybe."], prompt=f"question {k}")
        ids = [int(c.id or 0) for c in turn.candidates]
        blind = k % 2 == 0
        # shown turns: the model's top reply (the long one) is shown first and picked;
        # blind turns: the long reply is shown last and picked only 4 times in 12
        order = [1, 0, 2, 3] if not blind else [0, 2, 3, 1]
        positions = {ids[i]: where for where, i in enumerate(order)}
        chosen = ids[1] if not blind or k % 6 == 0 else ids[0]
        repo.labels.pick(int(turn.id or 0), chosen, model_top_candidate_id=ids[1],
                         shown=Shown(blind=blind, time_to_pick_s=float(4 + k),
                                     positions=positions))
    report = habits(repo, labeling)
    pos = report.position
    assert report.position.picks == 24
    assert pos.first_share == pytest.approx(20 / 24)  # 12 shown + 8 blind "Yes." first
    assert pos.shares[0].p_value == pytest.approx(two_sided_binomial_p(20, 24, 0.25), rel=1e-6)
    length = report.length
    assert (length.picks, length.longest_share) == (24, pytest.approx(16 / 24))
    assert length.p_value == pytest.approx(two_sided_binomial_p(16, 24, 0.25), rel=1e-6)
    assert (report.blind.rate, report.blind.picks) == (pytest.approx(4 / 12), 12)
    assert (report.shown.rate, report.shown.picks) == (1.0, 12)
    assert report.agreement_p == pytest.approx(0.0014, abs=1e-4)  # Fisher: [[4, 8], [12, 0]]
    assert report.times.picks == 24 and report.times.median == pytest.approx(15.5)
    assert (report.times.low, report.times.high) == (pytest.approx(9.75), pytest.approx(21.25))
    lines = report.lines
    assert lines[0] == ("You picked the first card 83% of the time (chance 25%, p < 0.001, "
                        "24 picks): more often than chance")
    assert lines[1].startswith("You picked the longest reply 67% of the time (chance 25%, "
                               "p < 0.001, 24 picks)")
    assert lines[2] == ("The model's top reply was your pick 33% of the time on blind turns "
                        "(12) and 100% when its ranking was shown (12); p = 0.001: the shown "
                        "ranking sways your picks")
    assert lines[3] == "You take 16 s to pick (median; half of your 24 picks took 10–21 s)"
    repo.close()
