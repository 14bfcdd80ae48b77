"""The user's own labeling habits, in plain words (issue 13's bias report).

Each figure is computed from the labels this data folder recorded, against what a user
without that habit would give, with a test of whether chance explains the gap:

* **position** — the share of picks that went to the card shown at each position, against
  1/N, with a two-sided binomial test (scipy.stats.binomtest) per position;
* **length** — picks of the longest whole reply, against the share a random pick would give,
  with the same test;
* **agreement** — the model's top reply picked, on blind turns against turns that showed the
  ranking (a gap means the shown order sways the picks), with Fisher's exact test;
* **time to pick** — the median seconds from the whole turn on screen to the label, and the
  middle half of them.

Turns with different numbers of cards N: a position's chance is the mean of 1/N over the
picks from turns that showed that position (a turn of 2 cards has no 3rd card, so it does not
count for the 3rd), and the test is a binomial test against that mean. The exact null is then
a Poisson-binomial distribution, whose spread is never larger than the binomial's, so with
mixed N the p-value is slightly conservative (a little too large, never too small); with one
N it is exact. Picks only: a tie, ranking, edit or "all bad" is not a pick of one card.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rlhf_desktop.services.labels.labeling import Agreement, LabelingService
from rlhf_desktop.storage.repo import Repository

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
SIGNIFICANT = 0.05


def p_words(p: float) -> str:
    """"p = 0.003", or "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def binomial_p(hits: int, n: int, chance: float) -> float:
    """Two-sided binomial test of ``hits`` in ``n`` against ``chance``."""
    from scipy.stats import binomtest  # on use: scipy.stats is not loaded at the window's start

    return float(binomtest(hits, n, min(max(chance, 0.0), 1.0)).pvalue) if n else 1.0


def _verdict(share: float, chance: float, p: float) -> str:
    if p >= SIGNIFICANT:
        return "within what chance gives"
    return "more often than chance" if share > chance else "less often than chance"


@dataclass(frozen=True)
class PositionShare:
    """Picks of the card shown at one position (0-based) against chance."""

    position: int
    picks: int
    """Picks that went to this position."""
    turns: int
    """Picks made in turns that showed a card at this position."""
    chance: float
    """Mean 1/N over those turns."""
    p_value: float

    @property
    def share(self) -> float:
        """Share of those picks that went to this position."""
        return self.picks / self.turns if self.turns else 0.0

    @property
    def name(self) -> str:
        """"first", "second", … ("card 9" past the eighth)."""
        return (ORDINALS[self.position] if self.position < len(ORDINALS)
                else f"card {self.position + 1}")


@dataclass(frozen=True)
class PositionReport:
    """Share of picks by display position, against 1/N, per position."""

    shares: tuple[PositionShare, ...]
    picks: int
    card_counts: tuple[int, ...]
    """The numbers of cards the counted turns showed (several: chance is a mean)."""

    @property
    def first_share(self) -> float | None:
        """Share of picks that went to the first card."""
        return self.shares[0].share if self.shares else None

    @property
    def chance(self) -> float | None:
        """The first card's chance (mean 1/N)."""
        return self.shares[0].chance if self.shares else None

    @property
    def words(self) -> str:
        """E.g. "you picked the first card 41% of the time (chance 25%, p = 0.003, 40
        picks): more often than chance"."""
        if not self.shares:
            return "no picks with recorded card positions yet"
        first = self.shares[0]
        return (f"you picked the first card {first.share:.0%} of the time (chance "
                f"{first.chance:.0%}, {p_words(first.p_value)}, {self.picks} "
                f"pick{'s' if self.picks != 1 else ''}): "
                f"{_verdict(first.share, first.chance, first.p_value)}")

    @property
    def note(self) -> str:
        """How chance and the test were computed."""
        if len(self.card_counts) > 1:
            counts = ", ".join(str(n) for n in self.card_counts)
            return (f"Your picks came from turns of {counts} cards, so chance at each position "
                    "is the mean of 1/N over the turns that showed it, and the binomial test "
                    "against it is slightly conservative.")
        return "Chance is 1/N; each position is tested with an exact two-sided binomial test."


def position_report(picks: list[tuple[int, int]]) -> PositionReport:
    """The report of (position picked, cards shown) pairs (:meth:`pick_positions`)."""
    picks = [(where, n) for where, n in picks if n >= 2 and 0 <= where < n]
    if not picks:
        return PositionReport((), 0, ())
    shares = []
    for position in range(max(n for _w, n in picks)):
        shown = [(where, n) for where, n in picks if n > position]
        hits = sum(1 for where, _n in shown if where == position)
        chance = sum(1 / n for _w, n in shown) / len(shown)
        shares.append(PositionShare(position, hits, len(shown), chance,
                                    binomial_p(hits, len(shown), chance)))
    return PositionReport(tuple(shares), len(picks), tuple(sorted({n for _w, n in picks})))


@dataclass(frozen=True)
class LengthBias:
    """How often the longest whole reply of a turn was the pick, against chance."""

    longest_share: float | None
    chance: float | None
    picks: int
    p_value: float | None = None

    @property
    def words(self) -> str:
        """E.g. "you picked the longest reply 62% of the time (chance 27%, p = 0.01, 40
        picks): more often than chance"."""
        if self.longest_share is None or self.chance is None:
            return "no picks to measure a length habit yet"
        p = 1.0 if self.p_value is None else self.p_value
        return (f"you picked the longest reply {self.longest_share:.0%} of the time "
                f"(chance {self.chance:.0%}, {p_words(p)}, {self.picks} "
                f"pick{'s' if self.picks != 1 else ''}): "
                f"{_verdict(self.longest_share, self.chance, p)}")


@dataclass(frozen=True)
class PickTimes:
    """Seconds from the whole turn on screen to the label."""

    median: float | None
    low: float | None
    """The 25th percentile."""
    high: float | None
    """The 75th percentile."""
    picks: int


@dataclass(frozen=True)
class Habits:
    """Everything the model page says about how the user labels."""

    position: PositionReport
    length: LengthBias
    blind: Agreement
    shown: Agreement
    times: PickTimes

    @property
    def median_pick_s(self) -> float | None:
        """The median time to pick."""
        return self.times.median

    @property
    def agreement_p(self) -> float | None:
        """Fisher's exact test of "agreement is the same blind and shown"."""
        counts = [(a.rate, a.picks) for a in (self.blind, self.shown)]
        if any(rate is None or n == 0 for rate, n in counts):
            return None
        table = [[round((rate or 0.0) * n), n - round((rate or 0.0) * n)] for rate, n in counts]
        from scipy.stats import fisher_exact

        return float(fisher_exact(table).pvalue)

    @property
    def lines(self) -> list[str]:
        """One plain sentence per habit."""
        lines = [self.position.words.capitalize(), self.length.words.capitalize()]
        b, s = self.blind, self.shown
        if b.rate is not None and s.rate is not None:
            p = self.agreement_p
            gap = ("" if p is None else f"; {p_words(p)}: " + (
                "the shown ranking sways your picks" if p < SIGNIFICANT and s.rate > b.rate
                else "a real difference" if p < SIGNIFICANT
                else "no sign that the shown ranking sways you"))
            lines.append(f"The model's top reply was your pick {b.rate:.0%} of the time on "
                         f"blind turns ({b.picks}) and {s.rate:.0%} when its ranking was shown "
                         f"({s.picks}){gap}")
        elif b.rate is not None:
            lines.append(f"The model's top reply was your pick {b.rate:.0%} of the time on "
                         f"blind turns ({b.picks}); no picks with the ranking shown to compare")
        t = self.times
        if t.median is not None and t.low is not None and t.high is not None:
            lines.append(f"You take {t.median:.0f} s to pick (median; half of your "
                         f"{t.picks} picks took {t.low:.0f}–{t.high:.0f} s)")
        return lines


def length_bias(repo: Repository, last: int = 200) -> LengthBias:
    """Share of the last picks that went to the longest whole reply of their turn."""
    hits, chance, n = 0, 0.0, 0
    for label in repo.labels.recent(last, kind="pick"):
        if label.turn_id is None or label.chosen_candidate_id is None:
            continue
        whole = [c for c in repo.conversations.get_turn(label.turn_id).candidates
                 if c.text.strip() and not c.error and c.source != "edit"]
        if len(whole) < 2:
            continue
        longest = max(len(c.text) for c in whole)
        tops = [c.id for c in whole if len(c.text) == longest]
        hits += label.chosen_candidate_id in tops
        chance += len(tops) / len(whole)
        n += 1
    if not n:
        return LengthBias(None, None, 0)
    return LengthBias(hits / n, chance / n, n, binomial_p(hits, n, chance / n))


def pick_times(times: list[float]) -> PickTimes:
    """Median and quartiles of the times to pick."""
    if not times:
        return PickTimes(None, None, None, 0)
    if len(times) == 1:
        return PickTimes(times[0], times[0], times[0], 1)
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return PickTimes(q2, q1, q3, len(times))


def habits(repo: Repository, labeling: LabelingService, last: int = 200) -> Habits:
    """The report (reads the database; fast enough for a page refresh at a few hundred
    labels)."""
    ids = [label.id for label in repo.labels.recent(last, kind="pick")]
    times = [float(t) for p in repo.provenance.of_labels(ids).values()
             if isinstance(t := p.get("time_to_pick_s"), (int, float))]
    return Habits(
        position=position_report(repo.labels.pick_positions(last)), length=length_bias(repo, last),
        blind=labeling.agreement(blind_only=True, last=last),
        shown=Agreement(*repo.labels.agreement_rate(last, blind=False), blind_only=False),
        times=pick_times(times),
    )
