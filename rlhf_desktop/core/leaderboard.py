"""The leaderboard of candidate sources (issue 13 item 5), computed from this user's labels
on arena turns the way Chatbot Arena does it (FastChat ``elo_analysis.py``).

Battles (round 4's "Leaderboard outcomes"): a pick makes the chosen reply's source beat the
source of each rejected reply, and a ranking makes each better reply's source beat each worse
one's (both read from the label's pairs); a tie is a tie between each two tied replies of
different sources; "all bad" is a tie between every two different sources of the turn's
whole replies (FastChat counts "both bad" as a tie); an edit makes no battle. Two replies of
one source are never a battle. Two replies that are the same reply are a tie, never a win
(:func:`turn_battles`).

Strengths are Bradley-Terry maximum-likelihood estimates by logistic regression, as
``compute_mle_elo``: one row per battle with +ln(BASE) for the first source and −ln(BASE) for
the second, no intercept, no penalty; a tie counts as half a win each way; the coefficients
times SCALE plus INIT_RATING are the strengths. With no intercept, only differences are
identified; the strengths are anchored so that their mean is INIT_RATING (the average
source is 1000). P(A beats B) = 1 / (1 + BASE ** ((B − A) / SCALE)).

The 95 % intervals are the 2.5 and 97.5 percentiles of the strengths refitted on bootstrap
resamples of TURNS (a turn's battles stay together, since they share one decision).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from rlhf_desktop.core.bradley_terry import (
    BASE,
    INIT_RATING,
    SCALE,
    Battle,
    battle_weights,
    bootstrap,
    finite_mle,
    fit_strengths,
    intervals,
    newton_strengths,
)
from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.core.pick_rules import same_reply

__all__ = ["BASE", "INIT_RATING", "MIN_BATTLES", "MIN_TURNS", "ROUNDS", "SCALE",
           "ArenaCandidate", "ArenaTurn", "Battle",
           "HeadToHead", "Leaderboard", "Standing", "battle_weights", "compute",
           "finite_mle", "fit_strengths", "head_to_head", "newton_strengths", "tuned_vs_base",
           "turn_battles"]

ROUNDS = 1000
"""Bootstrap resamples for the strengths' intervals."""
MIN_BATTLES = 10
"""Battles every source needs before the board shows strengths."""
MIN_TURNS = 5
"""Turns a head-to-head needs before it shows a win rate."""


@dataclass(frozen=True)
class ArenaCandidate:
    """One reply of an arena turn."""

    id: int
    source: str | None
    """The name of the candidate source it came from (None: no origin, e.g. a rewrite)."""
    origin: dict[str, Any] | None
    pickable: bool
    """A whole reply of the model (text, no error, not stopped, not the user's rewrite)."""
    text: str = ""
    """The reply (two replies that are the same reply battle to a tie)."""


@dataclass(frozen=True)
class ArenaTurn:
    """One label on an arena turn, with the replies it was about."""

    label_id: int
    turn_id: int
    kind: str
    """``pick``, ``tie``, ``all_bad``, ``ranking`` or ``edit``."""
    chosen: int | None
    members: tuple[int, ...]
    """A ranking's replies best first; a tie's tied replies; else empty."""
    pairs: tuple[tuple[int, int], ...]
    """The label's preference pairs as (better, worse) reply ids."""
    candidates: tuple[ArenaCandidate, ...] = field(default_factory=tuple)
    blind: bool = True
    created_at: float = 0.0

    def candidate(self, candidate_id: int) -> ArenaCandidate | None:
        """The reply with that id, if it belongs to the turn."""
        return next((c for c in self.candidates if c.id == candidate_id), None)



def turn_battles(turn: ArenaTurn) -> list[Battle]:
    """The battles one labeled arena turn makes (module docstring). Two replies that are
    the same reply (:func:`~rlhf_desktop.core.pick_rules.same_reply`) battle to a tie,
    never a win: a pick's chosen reply against an identical one (no pair is stored for
    it), a ranking's identical replies, and a pair stored before that rule."""
    source = {c.id: c.source for c in turn.candidates}
    text = {c.id: c.text for c in turn.candidates}
    battles: list[Battle] = []

    def same(one: int, other: int) -> bool:  # no text known: not the same reply
        a, b = text.get(one, ""), text.get(other, "")
        return bool(a.strip() and b.strip()) and same_reply(a, b)

    def battle(better: int, worse: int) -> None:
        a, b = source.get(better), source.get(worse)
        if a and b and a != b:
            battles.append(Battle(a, b, 0.5 if same(better, worse) else 1.0))

    if turn.kind in ("pick", "ranking"):
        for better, worse in turn.pairs:
            battle(better, worse)
        stored = set(turn.pairs)
        first = list(turn.members) if turn.kind == "ranking" else \
            [turn.chosen] if turn.chosen is not None else []
        rest = [c.id for c in turn.candidates if c.pickable and c.id not in first]
        for i, better in enumerate(first):
            for worse in [*first[i + 1:], *rest]:
                if (better, worse) not in stored and same(better, worse):
                    battle(better, worse)
    elif turn.kind == "tie":
        tied = [source.get(m) for m in turn.members]
        battles += [Battle(a, b, 0.5) for a, b in combinations(tied, 2) if a and b and a != b]
    elif turn.kind == "all_bad":
        names = sorted({c.source for c in turn.candidates if c.source and c.pickable})
        battles += [Battle(a, b, 0.5) for a, b in combinations(names, 2)]
    return battles


@dataclass(frozen=True)
class Standing:
    """One source's row: strength with its interval (None until there are enough battles),
    and its record."""

    name: str
    strength: float | None
    low: float | None
    high: float | None
    wins: int
    losses: int
    ties: int

    @property
    def battles(self) -> int:
        """Battles fought."""
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float | None:
        """Share of battles won, a tie counting half."""
        return (self.wins + self.ties / 2) / self.battles if self.battles else None


@dataclass(frozen=True)
class HeadToHead:
    """How often side ``a`` beat side ``b`` in the battles between them (a tie counts half),
    with a 95 % bootstrap interval over turns."""

    a: str
    b: str
    rate: float | None
    low: float | None
    high: float | None
    wins: int
    losses: int
    ties: int
    turns: int

    @property
    def battles(self) -> int:
        """Battles between the two sides."""
        return self.wins + self.losses + self.ties

    @property
    def words(self) -> str:
        """E.g. "chat model v2 (tuned) beat the base model in 64% of 42 battles (95% CI
        51–76%, …)"."""
        if self.rate is None or self.low is None or self.high is None:
            return (f"{self.a} against {self.b}: {self.turns} labeled turn"
                    f"{'s' if self.turns != 1 else ''} so far; a win rate with its 95 % "
                    f"interval needs at least {MIN_TURNS}")  # (the table shows the record)
        return (f"{self.a} beat {self.b} in {self.rate:.0%} of {self.battles} battles "
                f"(95% CI {self.low:.0%}–{self.high:.0%}; {self.wins} won, {self.losses} "
                f"lost, {self.ties} tied, in {self.turns} blind turns; a tie counts half)")


@dataclass(frozen=True)
class Leaderboard:
    """The sources, strongest first (by record while there are no strengths yet)."""

    standings: list[Standing]
    turns: int
    """Labeled arena turns that made at least one battle."""
    battles: int
    note: str
    """Why there are no strengths yet, or what the numbers are."""
    rounds: int = 0
    degenerate: float = 0.0
    """Share of bootstrap resamples in which a source was missing or won (or lost) every
    battle, so its strength had no finite estimate there."""
    head_to_head: list[HeadToHead] = field(default_factory=list)
    """Tuned chat-model versions against the base model (provider local, version 0)."""

    @property
    def ready(self) -> bool:
        """True when the standings carry strengths."""
        return bool(self.standings) and self.standings[0].strength is not None

    @property
    def verdict(self) -> str:
        """The board in one plain sentence ("" while there are no strengths)."""
        if not self.ready or len(self.standings) < 2:
            return ""
        top, second = self.standings[0], self.standings[1]
        if top.low is not None and second.high is not None and top.low > second.high:
            return f"{top.name} leads: its interval lies above every other source's"
        return (f"{top.name} leads, but its interval overlaps {second.name}'s: your picks do "
                "not yet say which of them is better")


def _record(turns: Sequence[Sequence[Battle]], name: str) -> tuple[int, int, int]:
    wins = losses = ties = 0
    for battles in turns:
        for bt in battles:
            if name not in (bt.a, bt.b):
                continue
            score = bt.score if bt.a == name else 1.0 - bt.score
            wins += score == 1.0
            losses += score == 0.0
            ties += score == 0.5
    return wins, losses, ties


def _not_ready(w: np.ndarray, names: list[str], records: dict[str, tuple[int, int, int]]
               ) -> str:
    if len(names) < 2:
        return ("No battles yet: an arena turn of two or more sources makes battles when you "
                "pick, rank, tie or mark all bad (an edit makes none)")
    few = [f"{n} has {sum(records[n])}" for n in names if sum(records[n]) < MIN_BATTLES]
    if few:
        return (f"Too few battles to rank the sources yet ({', '.join(few)}; each needs "
                f"{MIN_BATTLES}). Keep labeling arena turns")
    never_lost = [n for n in names if records[n][1] == 0 and records[n][2] == 0]
    never_won = [n for n in names if records[n][0] == 0 and records[n][2] == 0]
    who = (f"{', '.join(never_lost)} never lost" if never_lost else
           f"{', '.join(never_won)} never won" if never_won else
           "one group of sources never lost to the others")
    return (f"No finite strengths yet: {who}, so Bradley-Terry cannot say by how much. "
            "Keep labeling arena turns")


def compute(turns: Sequence[ArenaTurn], rounds: int = ROUNDS, seed: int = 0) -> Leaderboard:
    """The leaderboard of the labeled arena turns (pure: no database, no Qt)."""
    battles = [b for b in (turn_battles(t) for t in turns) if b]
    names = sorted({name for bs in battles for bt in bs for name in (bt.a, bt.b)})
    records = {n: _record(battles, n) for n in names}
    tuned = tuned_vs_base(turns, battles)
    total = sum(len(b) for b in battles)
    w_turns = battle_weights(battles, names)
    w = w_turns.sum(axis=0)
    # A source new to the arena (a tuned version offered blind) must not blank the others:
    # the sources with enough battles are ranked among themselves, the new ones listed.
    ranked = [n for n in names if sum(records[n]) >= MIN_BATTLES]
    newcomers = [n for n in names if n not in ranked]
    fitted = [[bt for bt in bs if bt.a in ranked and bt.b in ranked] for bs in battles]
    fitted = [bs for bs in fitted if bs]
    w_turns_r = battle_weights(fitted, ranked)
    if len(ranked) < 2 or not finite_mle(w_turns_r.sum(axis=0)):
        standings = [Standing(n, None, None, None, *records[n]) for n in names]
        standings.sort(key=lambda s: -(s.win_rate or 0.0))
        return Leaderboard(standings, len(battles), total, _not_ready(w, names, records),
                           head_to_head=tuned)
    point = fit_strengths(w_turns_r.sum(axis=0))
    boot, degenerate = bootstrap(w_turns_r, rounds, seed, point)
    low, high = intervals(boot)
    standings = [Standing(n, float(point[i]), float(low[i]), float(high[i]), *records[n])
                 for i, n in enumerate(ranked)]
    standings.sort(key=lambda s: -(s.strength or 0.0))
    later = [Standing(n, None, None, None, *records[n]) for n in newcomers]
    standings += sorted(later, key=lambda s: -(s.win_rate or 0.0))
    used = sum(len(bs) for bs in fitted)
    note = (f"Bradley-Terry strengths on the Elo scale (the average source is "
            f"{INIT_RATING:.0f}; 400 points = 10:1 odds) from {used} battles in "
            f"{len(fitted)} turns; 95% intervals from {rounds} bootstrap resamples of turns")
    if newcomers:
        few = ", ".join(f"{n} has {sum(records[n])}" for n in newcomers)
        note += (f". Not ranked yet: {few} (each needs {MIN_BATTLES} battles); their "
                 "battles are counted in their rows, the strengths come from the battles "
                 "between the ranked sources")
    if degenerate > 0.025:
        note += (f". In {degenerate:.0%} of the resamples a source won or lost every battle "
                 "it had, so its strength there has no end: an interval bound shown as … is "
                 "open (more battles close it)")
    return Leaderboard(standings, len(battles), total, note, rounds, degenerate, tuned)


def head_to_head(turns: Sequence[Sequence[Battle]], side_a: set[str], side_b: set[str],
                 a: str, b: str, rounds: int = 2000, seed: int = 0) -> HeadToHead:
    """How often the sources in ``side_a`` beat those in ``side_b`` (a tie counts half),
    with a percentile bootstrap interval over the turns where they met."""
    scores, counts = [], []
    wins = losses = ties = 0
    for battles in turns:
        s = n = 0.0
        for bt in battles:
            if bt.a in side_a and bt.b in side_b:
                score = bt.score
            elif bt.b in side_a and bt.a in side_b:
                score = 1.0 - bt.score
            else:
                continue
            s, n = s + score, n + 1
            wins += score == 1.0
            losses += score == 0.0
            ties += score == 0.5
        if n:
            scores.append(s)
            counts.append(n)
    if len(scores) < MIN_TURNS:
        return HeadToHead(a, b, None, None, None, wins, losses, ties, len(scores))
    s_arr, n_arr = np.array(scores), np.array(counts)
    idx = np.random.default_rng(seed).integers(0, len(scores), size=(rounds, len(scores)))
    rates = s_arr[idx].sum(axis=1) / n_arr[idx].sum(axis=1)
    low, high = np.percentile(rates, [2.5, 97.5])
    return HeadToHead(a, b, float(s_arr.sum() / n_arr.sum()), float(low), float(high),
                      wins, losses, ties, len(scores))


def tuned_vs_base(turns: Sequence[ArenaTurn], battles: Sequence[Sequence[Battle]] | None = None
                  ) -> list[HeadToHead]:
    """Each tuned chat-model version (a source with provider ``local`` and
    ``chat_model_version`` N > 0) against the base model (``local``, version 0), where both
    met; by the origin each source's replies recorded most recently."""
    version: dict[str, int] = {}
    for turn in turns:
        for cand in turn.candidates:
            origin = cand.origin or {}
            if cand.source and origin.get("provider") == "local":
                version[cand.source] = int(origin.get("chat_model_version") or 0)
            elif cand.source:
                version.pop(cand.source, None)
    base = {name for name, v in version.items() if v == 0}
    if not base:
        return []
    if battles is None:
        battles = [b for b in (turn_battles(t) for t in turns) if b]
    met = {name for bs in battles for bt in bs for name in (bt.a, bt.b)}
    out = []
    for v in sorted({v for v in version.values() if v > 0}):
        tuned = {name for name, n in version.items() if n == v}
        if tuned & met and base & met:
            out.append(head_to_head(battles, tuned, base, version_name(v), version_name(0)))
    return out
