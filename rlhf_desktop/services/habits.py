"""The user's own labeling habits, in plain words (issue 13's bias report, first part).

Each figure is computed from the labels this data folder recorded, against what a user
without that habit would give:

* **position** — picks of the card shown first, against the mean of 1/N;
* **length** — picks of the longest whole reply, against the mean of 1/N;
* **agreement** — the model's top reply picked, on blind turns against turns that showed the
  ranking (a gap means the shown order sways the picks);
* **time to pick** — the median seconds from the whole turn on screen to the label.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rlhf_desktop.services.labeling import Agreement, LabelingService, PositionBias
from rlhf_desktop.storage.repo import Repository


@dataclass(frozen=True)
class LengthBias:
    """How often the longest whole reply of a turn was the pick, against chance."""

    longest_share: float | None
    chance: float | None
    picks: int

    @property
    def words(self) -> str:
        """E.g. "you picked the longest reply 62 % of the time (chance 27 %, 40 picks)"."""
        if self.longest_share is None or self.chance is None:
            return "no picks to measure a length habit yet"
        return (f"you picked the longest reply {self.longest_share:.0%} of the time "
                f"(chance {self.chance:.0%}, {self.picks} pick{'s' if self.picks != 1 else ''})")


@dataclass(frozen=True)
class Habits:
    """Everything the model page says about how the user labels."""

    position: PositionBias
    length: LengthBias
    blind: Agreement
    shown: Agreement
    median_pick_s: float | None

    @property
    def lines(self) -> list[str]:
        """One plain sentence per habit."""
        lines = [self.position.words.capitalize(), self.length.words.capitalize()]
        if self.blind.rate is not None and self.shown.rate is not None:
            lines.append(f"The model's top reply was your pick {self.blind.rate:.0%} of the "
                         f"time on blind turns and {self.shown.rate:.0%} when its ranking was "
                         "shown")
        if self.median_pick_s is not None:
            lines.append(f"You take {self.median_pick_s:.0f} s to pick (median)")
        return lines


def length_bias(repo: Repository, last: int = 200) -> LengthBias:
    """Share of the last picks that went to the longest whole reply of their turn."""
    hits, chance, n = 0, 0.0, 0
    for label in repo.recent_labels(last, kind="pick"):
        if label.turn_id is None or label.chosen_candidate_id is None:
            continue
        whole = [c for c in repo.get_turn(label.turn_id).candidates
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
    return LengthBias(hits / n, chance / n, n)


def habits(repo: Repository, labeling: LabelingService, last: int = 200) -> Habits:
    """The report (reads the database; fast enough for a page refresh at a few hundred
    labels)."""
    ids = [label.id for label in repo.recent_labels(last, kind="pick")]
    times = [t for p in repo.label_provenance(ids).values()
             if isinstance(t := p.get("time_to_pick_s"), (int, float))]
    return Habits(
        position=labeling.position_bias(last), length=length_bias(repo, last),
        blind=labeling.agreement(blind_only=True, last=last),
        shown=Agreement(*repo.agreement_rate(last, blind=False), blind_only=False),
        median_pick_s=statistics.median(times) if times else None,
    )
