"""The provenance of one preference pair, as exported in its ``metadata``."""

from __future__ import annotations

from typing import Any

from rlhf_desktop.domain import PreferencePair

METADATA_KEYS = (
    "label_id", "label_kind", "conversation_id", "turn_id", "provider", "model", "temperature",
    "seed", "blind", "time_to_pick_s", "reward_model_version", "chosen_score",
    "rejected_score", "chosen_position", "rejected_position", "chosen_source",
    "edited_from_index",
)
"""The keys of every pair's ``metadata`` (each line has all of them; unknown ones are null)."""


def pair_metadata(pair: PreferencePair, label: dict[str, Any] | None,
                  cands: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One pair's provenance: its label's and its two replies' (scores and positions as
    they were when the user labeled the turn)."""
    meta: dict[str, Any] = dict.fromkeys(METADATA_KEYS)
    meta["label_id"] = pair.label_id
    meta["label_kind"] = pair.source if label is None else label["label_kind"]
    meta["blind"] = False
    if label is not None:
        for key in ("conversation_id", "turn_id", "provider", "model", "temperature", "seed",
                    "blind", "time_to_pick_s", "reward_model_version"):
            meta[key] = label[key]
    for side, cid in (("chosen", pair.chosen_candidate_id),
                      ("rejected", pair.rejected_candidate_id)):
        facts = cands.get(cid) if cid is not None else None
        if facts is None:
            continue
        scores = label["scores"] if label is not None else {}
        positions = label["positions"] if label is not None else {}
        meta[f"{side}_score"] = scores.get(cid, facts["score"]) if cid is not None else None
        meta[f"{side}_position"] = positions.get(cid, facts["position"]) \
            if cid is not None else None
        if side == "chosen":
            meta["chosen_source"] = facts["source"]
            meta["edited_from_index"] = facts["edited_from_index"]
    return meta
