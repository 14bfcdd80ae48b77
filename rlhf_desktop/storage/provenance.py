"""The provenance of preference pairs, as exported in their ``metadata``: the keys, one
pair's record, and the queries that read it: ``repo.provenance``. It owns no table: it reads
what a label and its replies were when the user labeled the turn (``labels``, ``turns``,
``candidates``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rlhf_desktop.core.pick_rules import CUT
from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.storage.database import Database, in_chunks

__all__ = ["METADATA_KEYS", "Provenance", "pair_metadata"]

METADATA_KEYS = (
    "label_id", "label_kind", "conversation_id", "turn_id", "provider", "model", "temperature",
    "seed", "blind", "time_to_pick_s", "reward_model_version", "chosen_score",
    "rejected_score", "chosen_position", "rejected_position", "chosen_source",
    "edited_from_index", "weight", "chosen_rank", "rejected_rank", "chosen_origin",
    "rejected_origin", "rejected_cut",
)
"""The keys of every pair's ``metadata`` (each line has all of them; unknown ones are null).

``weight`` is the pair's training weight (1 for a pick; a ranking's pairs share N−1 between
them). ``chosen_rank`` / ``rejected_rank`` are the 1-based places of the two replies in a
ranking label (null outside a ranking, and for the replies a partial ranking left unranked,
which count as tied below every ranked one). ``chosen_origin`` / ``rejected_origin`` are the
arena source each reply came from (name, provider, model, temperature, chat_model_version;
null outside an arena turn, whose ``provider`` is ``arena``). ``rejected_cut`` is true when
the rejected reply was cut at max tokens (finish reason ``length``; the pair is kept, and
reward training leaves it out by default), false for a whole one, null for a pair without a
stored reply (an import)."""


def pair_metadata(pair: PreferencePair, label: dict[str, Any] | None,
                  cands: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One pair's provenance: its label's and its two replies' (scores and positions as
    they were when the user labeled the turn)."""
    meta: dict[str, Any] = dict.fromkeys(METADATA_KEYS)
    meta["label_id"] = pair.label_id
    meta["label_kind"] = pair.source if label is None else label["label_kind"]
    meta["blind"] = False
    meta["weight"] = pair.weight
    if label is not None:
        for key in ("conversation_id", "turn_id", "provider", "model", "temperature", "seed",
                    "blind", "time_to_pick_s", "reward_model_version"):
            meta[key] = label[key]
    ranking: list[int] = [] if label is None else label.get("ranking", [])
    for side, cid in (("chosen", pair.chosen_candidate_id),
                      ("rejected", pair.rejected_candidate_id)):
        if cid is not None and cid in ranking:
            meta[f"{side}_rank"] = ranking.index(cid) + 1
        facts = cands.get(cid) if cid is not None else None
        if facts is None:
            continue
        scores = label["scores"] if label is not None else {}
        positions = label["positions"] if label is not None else {}
        meta[f"{side}_score"] = scores.get(cid, facts["score"]) if cid is not None else None
        meta[f"{side}_position"] = positions.get(cid, facts["position"]) \
            if cid is not None else None
        meta[f"{side}_origin"] = facts.get("origin")
        if side == "rejected":
            meta["rejected_cut"] = facts.get("finish_reason") == CUT
        if side == "chosen":
            meta["chosen_source"] = facts["source"]
            meta["edited_from_index"] = facts["edited_from_index"]
    return meta


class Provenance:
    """Reads of what a label and its replies were when the user labeled the turn."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def of_labels(self, label_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per label: kind, turn, conversation, provider, model, temperature, seed, blind,
        time to pick, reward-model version, the scores and positions at display time, the
        tied replies of a tie (``tied``), the order of a ranking (``ranking``, candidate
        ids best first) and the user's one-line reason (``reason``, None when none)."""
        found: dict[int, dict[str, Any]] = {}
        ids = sorted(set(label_ids))
        for chunk, marks in in_chunks(ids):
            rows = self._db.conn.execute(
                "SELECT l.id, l.kind, l.turn_id, t.conversation_id, t.provider, t.model,"
                " t.params_json, COALESCE(l.blind, t.blind, 0), l.time_to_pick_s,"
                " l.reward_version, l.shown_json, l.members_json, l.reason FROM labels l"
                f" LEFT JOIN turns t ON t.id = l.turn_id WHERE l.id IN ({marks})", chunk)
            for r in rows:
                params = json.loads(r[6]) if r[6] else {}
                shown = json.loads(r[10]) if r[10] else {}
                members = [int(m) for m in json.loads(r[11])] if r[11] else []
                found[int(r[0])] = {
                    "label_kind": r[1], "turn_id": r[2], "conversation_id": r[3],
                    "provider": r[4], "model": r[5], "temperature": params.get("temperature"),
                    "seed": params.get("seed"), "blind": bool(r[7]), "time_to_pick_s": r[8],
                    "reward_model_version": r[9],
                    "scores": {int(k): v for k, v in shown.get("scores", {}).items()},
                    "positions": {int(k): v for k, v in shown.get("positions", {}).items()},
                    "tied": members if r[1] != "ranking" else [],
                    "ranking": members if r[1] == "ranking" else [],
                    "reason": r[12],
                }
        return found

    def of_candidates(self, candidate_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per candidate: index, score, model version, display position, source, and the
        index of the reply a rewrite came from."""
        found: dict[int, dict[str, Any]] = {}
        ids = sorted(set(candidate_ids))
        for chunk, marks in in_chunks(ids):
            rows = self._db.conn.execute(
                "SELECT k.id, k.idx, k.score, k.model_version, k.position, k.source, o.idx,"
                " k.origin_json, k.finish_reason"
                " FROM candidates k LEFT JOIN candidates o ON o.id = k.edited_from"
                f" WHERE k.id IN ({marks})", chunk)
            for r in rows:
                found[int(r[0])] = {"index": r[1], "score": r[2], "model_version": r[3],
                                    "position": r[4], "source": r[5], "edited_from_index": r[6],
                                    "origin": json.loads(r[7]) if r[7] else None,
                                    "finish_reason": r[8]}
        return found

    def with_metadata(self, pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
        """The pairs with their provenance in ``metadata`` (see :data:`METADATA_KEYS`)."""
        labels = self.of_labels([p.label_id for p in pairs if p.label_id is not None])
        cands = self.of_candidates([cid for p in pairs for cid in
                                      (p.chosen_candidate_id, p.rejected_candidate_id)
                                      if cid is not None])
        return [replace(p, metadata=pair_metadata(p, labels.get(p.label_id or -1), cands))
                for p in pairs]
