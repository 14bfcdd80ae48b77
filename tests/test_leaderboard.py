"""The leaderboard of candidate sources: battles from each label kind,
FastChat's Bradley-Terry MLE, bootstrap intervals over turns, and the acceptance test: picks
drawn from known strengths recover their order, with intervals that contain the truth."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from rlhf_desktop.core import leaderboard as lb
from rlhf_desktop.core.leaderboard import ArenaCandidate, ArenaTurn
from rlhf_desktop.domain import Candidate, CandidateSource, Message, SamplingParams, Turn
from rlhf_desktop.storage.repo import Repository

TRUE = {"alpha": 1250.0, "bravo": 1075.0, "charlie": 950.0, "delta": 725.0}
"""Known strengths on the Elo scale, anchored as the board anchors: mean 1000."""


def scripted_turns(n: int, seed: int, truth: dict[str, float] = TRUE,
                   origins: dict[str, dict[str, object]] | None = None) -> list[ArenaTurn]:
    """Arena turns of two sources × two replies each; the scripted user picks one reply
    with the Bradley-Terry (Luce) probability of its source, so a pick says "source A beat
    source B" with P = 1 / (1 + 10 ** ((B − A) / 400)). A pick's pairs are the chosen reply
    against each of the other three replies, as the app stores them."""
    rng = np.random.default_rng(seed)
    names = list(truth)
    turns, next_id = [], 0
    for t in range(n):
        a, b = (names[i] for i in rng.choice(len(names), 2, replace=False))
        cands = []
        for name in (a, a, b, b):
            next_id += 1
            origin = (origins or {}).get(name, {"name": name})
            cands.append(ArenaCandidate(next_id, name, dict(origin, name=name), True))
        p_a = 1.0 / (1.0 + 10 ** ((truth[b] - truth[a]) / 400))
        winner = a if rng.random() < p_a else b
        chosen = [c for c in cands if c.source == winner][int(rng.integers(2))]
        pairs = tuple((chosen.id, c.id) for c in cands if c.id != chosen.id)
        turns.append(ArenaTurn(t, t, "pick", chosen.id, (), pairs, tuple(cands)))
    return turns


def test_picks_drawn_from_known_strengths_recover_their_order_and_the_intervals_hold_them(
) -> None:
    board = lb.compute(scripted_turns(300, seed=0), seed=0)
    assert board.ready, board.note
    assert [s.name for s in board.standings] == list(TRUE)  # strongest first
    for s in board.standings:
        assert s.low is not None and s.high is not None and s.strength is not None
        assert s.low <= TRUE[s.name] <= s.high, (s, TRUE[s.name])
        assert s.low < s.strength < s.high
        assert s.high - s.low < 200, s  # informative, not trivially wide
    # the point estimate is anchored like the truth: the average source is 1000
    assert abs(sum(s.strength or 0.0 for s in board.standings) / 4 - 1000.0) < 1e-6
    assert board.turns == 300 and board.battles == 600  # 2 battles a turn: A vs each B reply
    assert sum(s.battles for s in board.standings) == 2 * board.battles
    assert "600 battles in 300 turns" in board.note
    assert board.degenerate == 0.0
    assert board.verdict == "alpha leads: its interval lies above every other source's"


def test_the_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    inside = total = 0
    for seed in range(1, 11):
        board = lb.compute(scripted_turns(200, seed=seed), rounds=400, seed=seed)
        for s in board.standings:
            assert s.low is not None and s.high is not None
            inside += s.low <= TRUE[s.name] <= s.high
            total += 1
    assert inside / total >= 0.85, f"{inside} of {total} intervals hold the truth"


def fastchat_compute_mle_elo(battles: list[tuple[str, str, str]]) -> dict[str, float]:
    """FastChat's compute_mle_elo, restated on (model_a, model_b, winner) rows: every battle
    twice, +ln 10 / −ln 10, a tie a win in one copy and a loss in the other, no intercept,
    no penalty, SCALE 400, INIT 1000."""
    models = sorted({m for a, b, _w in battles for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    rows = battles + battles
    x = np.zeros((len(rows), len(models)))
    y = np.zeros(len(rows))
    for r, (a, b, winner) in enumerate(rows):
        x[r, index[a]], x[r, index[b]] = math.log(10), -math.log(10)
        y[r] = 1.0 if winner == "model_a" or (winner == "tie" and r < len(battles)) else 0.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr.fit(x, y)
    elo = 400 * lr.coef_[0] + 1000
    return {m: float(elo[i]) for i, m in enumerate(models)}


def test_strengths_equal_fastchat_compute_mle_elo_ties_included() -> None:
    rng = np.random.default_rng(7)
    names = ["a", "b", "c"]
    rows: list[tuple[str, str, str]] = []
    for _ in range(120):
        a, b = rng.choice(names, 2, replace=False)
        rows.append((str(a), str(b), str(rng.choice(["model_a", "model_b", "tie"],
                                                     p=[0.5, 0.3, 0.2]))))
    expected = fastchat_compute_mle_elo(rows)
    battles = [[lb.Battle(a, b, {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}[w])]
               for a, b, w in rows]
    w = lb.battle_weights(battles, names).sum(axis=0)
    ours = lb.fit_strengths(w)
    newton = lb.newton_strengths(w[None])[0]
    for i, name in enumerate(names):
        assert ours[i] == pytest.approx(expected[name], abs=0.01)
        assert newton[i] == pytest.approx(expected[name], abs=0.01)  # the bootstrap's solver


def candidates(*spec: tuple[int, str | None, bool]) -> tuple[ArenaCandidate, ...]:
    return tuple(ArenaCandidate(cid, name, None if name is None else {"name": name}, ok)
                 for cid, name, ok in spec)


def test_battles_of_each_label_kind_follow_the_round_rules() -> None:
    two_by_two = candidates((1, "A", True), (2, "A", True), (3, "B", True), (4, "B", True))
    pick = ArenaTurn(1, 1, "pick", 1, (), ((1, 2), (1, 3), (1, 4)), two_by_two)
    assert lb.turn_battles(pick) == [lb.Battle("A", "B", 1.0)] * 2  # 1 vs 2: same source
    ranking = ArenaTurn(2, 2, "ranking", 3, (3, 1, 4, 2),
                        ((3, 1), (3, 4), (3, 2), (1, 4), (1, 2), (4, 2)), two_by_two)
    assert lb.turn_battles(ranking) == [lb.Battle("B", "A", 1.0), lb.Battle("B", "A", 1.0),
                                        lb.Battle("A", "B", 1.0), lb.Battle("B", "A", 1.0)]
    tie = ArenaTurn(3, 3, "tie", 1, (1, 2, 3), (), two_by_two)
    assert lb.turn_battles(tie) == [lb.Battle("A", "B", 0.5)] * 2  # 1–3 and 2–3, not 1–2
    three = candidates((1, "A", True), (2, "B", True), (3, "C", False), (4, "C", True))
    all_bad = ArenaTurn(4, 4, "all_bad", None, (), (), three)
    assert lb.turn_battles(all_bad) == [lb.Battle("A", "B", 0.5), lb.Battle("A", "C", 0.5),
                                        lb.Battle("B", "C", 0.5)]  # one tie a pair of sources
    failed_c = candidates((1, "A", True), (2, "B", True), (3, "C", False))
    assert all("C" not in (b.a, b.b) for b in lb.turn_battles(
        ArenaTurn(5, 5, "all_bad", None, (), (), failed_c)))  # a failed source is not "bad"
    edit_cands = two_by_two + candidates((5, None, False))
    edit = ArenaTurn(6, 6, "edit", 5, (), ((5, 1), (5, 2), (5, 3), (5, 4)), edit_cands)
    assert lb.turn_battles(edit) == []


def test_too_few_battles_say_so_instead_of_numbers() -> None:
    assert not lb.compute([]).ready
    assert "No battles yet" in lb.compute([]).note
    board = lb.compute(scripted_turns(8, seed=3))
    assert not board.ready
    assert all(s.strength is None and s.low is None for s in board.standings)
    assert "Too few battles" in board.note and f"each needs {lb.MIN_BATTLES}" in board.note
    assert sum(s.battles for s in board.standings) == 2 * board.battles  # counts still shown


def test_a_source_that_never_lost_has_no_finite_strength_and_the_board_says_so() -> None:
    board = lb.compute(scripted_turns(60, seed=5, truth={"champ": 9000.0, "b": 1000.0,
                                                          "c": 1000.0}))
    assert not board.ready and board.verdict == ""
    assert "champ never lost" in board.note
    champ = next(s for s in board.standings if s.name == "champ")
    assert champ.losses == 0 and champ.wins > 0 and champ.strength is None


def test_a_source_that_lost_every_battle_in_some_resamples_gets_an_open_bound() -> None:
    truth = {"strong": 1200.0, "middle": 1100.0, "weak": 700.0}
    board = lb.compute(scripted_turns(25, seed=2, truth=truth), seed=0)
    assert board.ready and board.degenerate > 0.025
    assert "open" in board.note
    weak = board.standings[-1]
    assert weak.name == "weak" and weak.low == -math.inf
    assert weak.high is not None and weak.strength is not None and weak.strength < weak.high
    for s in board.standings[:2]:  # the others keep finite, sensible intervals
        assert s.low is not None and s.high is not None and s.strength is not None
        assert math.isfinite(s.low) and math.isfinite(s.high)
        assert s.low < s.strength < s.high < 1600


def test_tuned_version_against_the_base_has_a_win_rate_with_an_interval() -> None:
    origins: dict[str, dict[str, object]] = {
        "base": {"provider": "local", "chat_model_version": 0},
        "tuned": {"provider": "local", "chat_model_version": 1},
        "gpt": {"provider": "azure", "chat_model_version": 0}}
    truth = {"base": 1000.0, "tuned": 1100.0, "gpt": 1200.0}
    turns = scripted_turns(240, seed=11, truth=truth, origins=origins)
    board = lb.compute(turns, rounds=300)
    (h2h,) = board.head_to_head
    assert (h2h.a, h2h.b) == ("chat model v1 (tuned)", "the base model")
    expected = 1 / (1 + 10 ** (-100 / 400))  # 0.64
    assert h2h.rate is not None and h2h.low is not None and h2h.high is not None
    assert h2h.low <= expected <= h2h.high and h2h.low < h2h.rate < h2h.high
    assert h2h.turns == sum(1 for t in turns
                            if {c.source for c in t.candidates} == {"base", "tuned"})
    assert h2h.battles == 2 * h2h.turns
    assert h2h.words.startswith(f"chat model v1 (tuned) beat the base model in {h2h.rate:.0%} of")
    few = lb.tuned_vs_base(turns[:12])
    assert few and few[0].rate is None
    assert "a win rate with its 95 % interval needs at least 5" in few[0].words


# ---------------------------------------------------------------------------- storage


def arena_turn(repo: Repository, texts: list[tuple[str, str]], failed: int | None = None
               ) -> Turn:
    """A stored arena turn: (source name, text) per reply, origins as the arena records."""
    conv = repo.conversations.create("arena")
    sources = {name: CandidateSource(name, provider="local") for name, _t in texts}
    turn = Turn(conversation_id=conv.id, messages=[Message("user", "Say hi")],
                provider="arena", model=" vs ".join(sources), params=SamplingParams(n=4),
                blind=True, candidates=[
                    Candidate(index=i, text=text, finish_reason="stop",
                              origin=sources[name].origin(0.7),
                              error="server error" if i == failed else None)
                    for i, (name, text) in enumerate(texts)])
    return repo.conversations.save_turn(turn)


def test_the_query_reads_every_label_kind_of_arena_turns_only(data_home: object) -> None:
    repo = Repository.open()
    spec = [("base", "Hi."), ("base", "Hello."), ("tuned", "Hey there!"), ("tuned", "Hi!")]
    picked, ranked, tied, bad, edited = (arena_turn(repo, spec, failed=3 if i == 3 else None)
                                         for i in range(5))
    ids = [[int(c.id or 0) for c in t.candidates] for t in (picked, ranked, tied, bad, edited)]
    repo.labels.pick(int(picked.id or 0), ids[0][2])
    repo.labels.rank(int(ranked.id or 0), [ids[1][0], ids[1][2], ids[1][1], ids[1][3]])
    repo.labels.tie(int(tied.id or 0), [ids[2][0], ids[2][3]])
    repo.labels.all_bad(int(bad.id or 0))
    repo.labels.edit(int(edited.id or 0), ids[4][0], "Hello, friend!")
    plain = repo.conversations.save_turn(Turn(conversation_id=picked.conversation_id,
                                              messages=[Message("user", "x")], provider="local",
                                              model="m", params=SamplingParams(n=2),
                                              candidates=[Candidate(index=0, text="a"),
                                                          Candidate(index=1, text="b")]))
    repo.labels.pick(int(plain.id or 0), int(plain.candidates[0].id or 0))  # not arena: not read

    turns = repo.arena.turns()
    assert [t.kind for t in turns] == ["pick", "ranking", "tie", "all_bad", "edit"]
    pick, ranking, tie, all_bad, edit = turns
    assert pick.chosen == ids[0][2] and pick.blind
    assert sorted(pick.pairs) == sorted((ids[0][2], o) for o in ids[0] if o != ids[0][2])
    assert ranking.members == (ids[1][0], ids[1][2], ids[1][1], ids[1][3])
    assert len(ranking.pairs) == 6
    assert tie.members == (ids[2][0], ids[2][3])
    assert [c.source for c in all_bad.candidates] == ["base", "base", "tuned", "tuned"]
    assert [c.pickable for c in all_bad.candidates] == [True, True, True, False]
    assert all_bad.candidates[2].origin == {"name": "tuned", "provider": "local", "model": "",
                                            "temperature": 0.7, "chat_model_version": 0}
    rewrite = edit.candidate(edit.chosen or -1)
    assert rewrite is not None and rewrite.source is None and not rewrite.pickable

    battles = [lb.turn_battles(t) for t in turns]
    assert battles[0] == [lb.Battle("tuned", "base", 1.0)] * 2
    # ranking base0 > tuned2 > base1 > tuned3: base0 beats both tuned, tuned2 beats base1,
    # base1 beats tuned3
    assert sorted((b.a, b.b) for b in battles[1]) == sorted(
        [("base", "tuned"), ("base", "tuned"), ("tuned", "base"), ("base", "tuned")])
    assert battles[2] == [lb.Battle("base", "tuned", 0.5)]
    assert battles[3] == [lb.Battle("base", "tuned", 0.5)]  # the failed reply is not counted
    assert battles[4] == []
    board = lb.compute(turns)
    assert board.turns == 4 and not board.ready and "Too few battles" in board.note
    repo.close()


def test_arena_pairs_export_each_side_s_source(data_home: object) -> None:
    """A pick in an arena turn: every exported pair names the source of both its replies."""
    import io
    import json

    from rlhf_desktop.services.datasets.pairs import export

    repo = Repository.open()
    try:
        turn = arena_turn(repo, [("base", "Short."), ("tuned v2", "A longer, better answer."),
                                 ("base", "Another one.")])
        chosen = turn.candidates[1]
        assert chosen.id is not None
        repo.labels.pick(turn.id or 0, chosen.id)
        out = io.StringIO()
        export(repo, "jsonl", out)
    finally:
        repo.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    for line in lines:
        meta = line["metadata"]
        assert meta["provider"] == "arena"
        assert meta["chosen_origin"]["name"] == "tuned v2"
        assert meta["rejected_origin"]["name"] == "base"
