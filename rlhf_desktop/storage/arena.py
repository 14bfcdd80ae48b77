"""Labeled arena turns, as the leaderboard reads them: ``repo.arena``. It owns no table: it
reads the labels, turns, replies and pairs of arena turns.

An arena turn is one whose candidates carry an ``origin`` (the candidate source each reply
came from). For every chat label on such a turn this reads what the leaderboard needs: the
label's kind, the chosen reply, the tied or ranked replies (best first), the label's pairs
as (better, worse) reply ids (a pick's chosen reply against each rejected one; a ranking's
every better reply against each worse one), and each reply's source name and whether it
could be picked.
"""

from __future__ import annotations

import json

from rlhf_desktop.core.leaderboard import ArenaCandidate, ArenaTurn
from rlhf_desktop.core.pick_rules import is_whole_reply
from rlhf_desktop.domain import Candidate
from rlhf_desktop.storage.database import Database, in_chunks

__all__ = ["Arena"]


class Arena:
    """Reads of labeled arena turns."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def turns(self) -> list[ArenaTurn]:
        """Every chat label given on an arena turn, oldest first."""
        rows = self._db.conn.execute(
            "SELECT l.id, l.turn_id, l.kind, l.chosen_candidate_id, l.members_json,"
            " COALESCE(l.blind, t.blind, 0), l.created_at FROM labels l"
            " JOIN turns t ON t.id = l.turn_id"
            " WHERE l.source IN ('pick', 'edit') AND EXISTS (SELECT 1 FROM candidates k"
            " WHERE k.turn_id = l.turn_id AND k.origin_json IS NOT NULL) ORDER BY l.id"
        ).fetchall()
        if not rows:
            return []
        turn_ids = sorted({int(r[1]) for r in rows})
        label_ids = [int(r[0]) for r in rows]
        candidates = self._arena_candidates(turn_ids)
        pairs = self._pairs_of(label_ids)
        return [
            ArenaTurn(
                label_id=int(r[0]), turn_id=int(r[1]), kind=str(r[2]),
                chosen=None if r[3] is None else int(r[3]),
                members=tuple(int(m) for m in json.loads(r[4])) if r[4] else (),
                pairs=tuple(pairs.get(int(r[0]), ())),
                candidates=tuple(candidates.get(int(r[1]), ())),
                blind=bool(r[5]), created_at=float(r[6]))
            for r in rows
        ]

    def _arena_candidates(self, turn_ids: list[int]) -> dict[int, list[ArenaCandidate]]:
        found: dict[int, list[ArenaCandidate]] = {}
        for chunk, marks in in_chunks(turn_ids):
            for r in self._db.conn.execute(
                    "SELECT id, turn_id, idx, text, finish_reason, error, source, origin_json"
                    f" FROM candidates WHERE turn_id IN ({marks}) ORDER BY turn_id, idx",
                    chunk):
                origin = json.loads(r[7]) if r[7] else None
                name = origin.get("name") if isinstance(origin, dict) else None
                reply = Candidate(index=int(r[2]), text=str(r[3]), finish_reason=r[4],
                                  error=r[5])
                found.setdefault(int(r[1]), []).append(ArenaCandidate(
                    id=int(r[0]), source=str(name) if name else None,
                    origin=origin if isinstance(origin, dict) else None,
                    pickable=r[6] != "edit" and is_whole_reply(reply), text=str(r[3])))
        return found

    def _pairs_of(self, label_ids: list[int]) -> dict[int, list[tuple[int, int]]]:
        found: dict[int, list[tuple[int, int]]] = {}
        for chunk, marks in in_chunks(label_ids):
            for label_id, better, worse in self._db.conn.execute(
                    "SELECT label_id, chosen_candidate_id, rejected_candidate_id FROM pairs"
                    f" WHERE label_id IN ({marks}) AND chosen_candidate_id IS NOT NULL"
                    " AND rejected_candidate_id IS NOT NULL ORDER BY id", chunk):
                found.setdefault(int(label_id), []).append((int(better), int(worse)))
        return found
