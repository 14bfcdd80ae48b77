"""A source new to the arena (the base and a tuned version offered blind, turning the others
off) does not blank the leaderboard: the sources with enough battles keep their strengths,
the new ones are listed with their battles until they have enough; sources turned off stay
on the board."""

from __future__ import annotations

from rlhf_desktop.core import leaderboard as lb
from rlhf_desktop.core.leaderboard import ArenaCandidate, ArenaTurn
from tests.test_leaderboard import scripted_turns


def _head_to_head(n: int, first_id: int) -> list[ArenaTurn]:
    """Blind turns of the base against tuned v1, one reply each, the tuned one picked."""
    turns = []
    for t in range(n):
        base = ArenaCandidate(first_id + 2 * t, "base",
                              {"name": "base", "provider": "local", "chat_model_version": 0},
                              True, f"base reply {t}")
        tuned = ArenaCandidate(first_id + 2 * t + 1, "tuned v1",
                               {"name": "tuned v1", "provider": "local",
                                "chat_model_version": 1}, True, f"tuned reply {t}")
        turns.append(ArenaTurn(1000 + t, 1000 + t, "pick", tuned.id, (),
                               ((tuned.id, base.id),), (base, tuned)))
    return turns


def test_new_sources_with_few_battles_leave_the_ranked_ones_ranked() -> None:
    before = lb.compute(scripted_turns(15, seed=3, truth={"cool": 1040.0, "hot": 960.0}),
                        rounds=200)
    assert before.ready, before.note
    assert all(s.battles >= lb.MIN_BATTLES for s in before.standings)
    turns = scripted_turns(15, seed=3, truth={"cool": 1040.0, "hot": 960.0})
    after = lb.compute(turns + _head_to_head(3, first_id=10_000), rounds=200)
    rows = {s.name: s for s in after.standings}
    assert set(rows) == {"cool", "hot", "base", "tuned v1"}  # the turned-off ones stay
    for name in ("cool", "hot"):
        old = next(s for s in before.standings if s.name == name)
        assert rows[name].strength == old.strength and rows[name].battles == old.battles
    assert rows["base"].strength is None and rows["base"].battles == 3
    assert rows["tuned v1"].wins == 3
    assert after.ready and "Not ranked yet: base has 3" in after.note, after.note
    assert "Too few battles" not in after.note
    assert [s.name for s in after.standings][2:] == ["tuned v1", "base"]
