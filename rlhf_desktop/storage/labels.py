"""Labels (the ``labels`` table): a turn's pick, tie, all bad, ranking or edit, and the
labels imported pairs come with; ``repo.labels``.

A turn holds at most one label from the chat: a new one replaces the previous one (changing
one's mind is not a second label), and a rewrite left without its edit label is deleted. A
label's pairs are :class:`~rlhf_desktop.storage.pairs.Pairs`' rows and its rewrite and the
turn's display are :class:`~rlhf_desktop.storage.conversations.Conversations`' rows: a label's
write asks them to write inside the one transaction it holds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rlhf_desktop.core.pick_rules import (
    RuleError,
    no_rejected_message,
    ranking_pairs,
    rejected_side,
    same_reply,
)
from rlhf_desktop.domain import (
    NO_PAIR_KINDS,
    Candidate,
    Label,
    Shown,
    Turn,
)
from rlhf_desktop.storage.database import Database, StorageError, messages_json, restore_row

if TYPE_CHECKING:
    from rlhf_desktop.storage.conversations import Conversations
    from rlhf_desktop.storage.pairs import Pairs

__all__ = ["CHAT_SOURCES", "Labels", "chat_label_of"]

CHAT_SOURCES = ("pick", "edit")
"""Label sources that belong to a turn of the chat (one label per turn)."""

_LABEL_COLUMNS = (
    "l.id, l.created_at, l.source, l.turn_id, l.chosen_candidate_id, l.reason,"
    " l.model_top_candidate_id, (SELECT COUNT(*) FROM pairs p WHERE p.label_id = l.id),"
    " l.kind, COALESCE(l.blind, 0)"
)


def _shown_json(shown: Shown) -> str:
    return json.dumps({"scores": {str(k): v for k, v in shown.scores.items()},
                       "positions": {str(k): v for k, v in shown.positions.items()}})


def chat_label_of(c: sqlite3.Connection, turn_id: int
                  ) -> tuple[str, int | None, tuple[int, ...]] | None:
    """The turn's chat label: (kind, chosen candidate id, members), or None. The members
    are the tied replies of a tie and the order of a ranking (best first)."""
    row = c.execute(
        "SELECT kind, chosen_candidate_id, members_json FROM labels WHERE turn_id = ?"
        " AND source IN ('pick', 'edit') ORDER BY id DESC LIMIT 1", (turn_id,)).fetchone()
    if row is None:
        return None
    members = tuple(int(m) for m in json.loads(row[2])) if row[2] else ()
    return str(row[0]), row[1], members


class Labels:
    """Writes and reads of labels. The ``*_in`` methods write inside a transaction another
    repository holds (an import's or a delete's of pairs), on the connection it passes."""

    def __init__(self, db: Database, conversations: Conversations, pairs: Pairs) -> None:
        self._db = db
        self._conversations = conversations
        self._pairs = pairs

    # ------------------------------------------------------------------ writing labels

    def pick(
        self,
        turn_id: int,
        chosen_candidate_id: int,
        reason: str | None = None,
        model_top_candidate_id: int | None = None,
        against: Sequence[int] | None = None,
        shown: Shown | None = None,
    ) -> int:
        """Record a thumbs-up: one label and its pairs in one durable transaction.

        The rejected side is every other whole reply: failed, empty, filtered and
        Esc-stopped (cancelled) replies are left out, and so are replies that are the same
        reply as the chosen one (a tie) (:mod:`rlhf_desktop.core.pick_rules`), and a
        rewrite of the user's. A reply cut at max tokens stays, flagged ``rejected_cut``.
        ``against`` names the rejected replies explicitly instead, which may include a
        failed or stopped reply on purpose. Returns the label id. A previous label on the
        same turn is replaced.
        """
        turn = self._conversations.get_turn(turn_id)
        chosen = self._candidate_of(turn, chosen_candidate_id)
        if not chosen.text.strip():
            raise StorageError("the chosen reply is empty; pick a reply with text")
        if chosen.source == "edit":
            raise StorageError("your edited reply is already the chosen one; to pick another "
                               "reply, pick it (the edit is replaced)")
        generated = [c for c in turn.candidates if c.source != "edit"]
        try:
            others = rejected_side(generated, chosen.id, against)
        except RuleError as exc:
            raise StorageError(str(exc)) from exc
        if not others:
            raise StorageError(no_rejected_message(generated, chosen.id))
        return self._write_label(turn, "pick", "pick", chosen.id, others, reason=reason,
                                 top=model_top_candidate_id, shown=shown)

    def tie(self, turn_id: int, tied: Sequence[int],
                   model_top_candidate_id: int | None = None,
                   shown: Shown | None = None) -> int:
        """Two or more replies equally good: a tie label, no pairs. Returns the label id."""
        turn = self._conversations.get_turn(turn_id)
        members = list(dict.fromkeys(tied))
        if len(members) < 2:
            raise StorageError("a tie needs two or more replies; pick the tied replies")
        for cid in members:
            if not self._candidate_of(turn, cid).text.strip():
                raise StorageError("an empty or failed reply cannot be part of a tie")
        return self._write_label(turn, "pick", "tie", members[0], [], members=members,
                                 top=model_top_candidate_id, shown=shown)

    def rank(self, turn_id: int, order: Sequence[int],
                       model_top_candidate_id: int | None = None,
                       shown: Shown | None = None) -> int:
        """A full (or top-k) ranking of the turn's replies, ``order`` = candidate ids best
        first: one label (``members_json`` = the order, chosen = the first) and its weighted
        pairs (:func:`~rlhf_desktop.core.pick_rules.ranking_pairs`). Replaces an earlier
        label of the turn. Returns the label id."""
        turn = self._conversations.get_turn(turn_id)
        generated = [c for c in turn.candidates if c.source != "edit"]
        try:
            pairs = ranking_pairs(generated, order)
        except RuleError as exc:
            raise StorageError(str(exc)) from exc
        members = list(order)
        return self._write_label(turn, "pick", "ranking", members[0], [], members=members,
                                 top=model_top_candidate_id, shown=shown, ranked=pairs)

    def all_bad(self, turn_id: int, model_top_candidate_id: int | None = None,
                       shown: Shown | None = None) -> int:
        """Every reply is bad: an all-bad flag on the turn, never turned into pairs."""
        turn = self._conversations.get_turn(turn_id)
        if not turn.candidates:
            raise StorageError("this turn has no replies to mark as bad")
        return self._write_label(turn, "pick", "all_bad", None, [],
                                 top=model_top_candidate_id, shown=shown)

    def edit(self, turn_id: int, edited_from: int, text: str,
                    model_top_candidate_id: int | None = None,
                    shown: Shown | None = None) -> tuple[int, Candidate]:
        """The user's rewrite of reply ``edited_from``: stored as a new candidate (source
        ``edit``) chosen over every original whole reply (the one it came from included).

        Returns the label id and the new candidate. Raises StorageError on empty text or
        text identical to the original."""
        turn = self._conversations.get_turn(turn_id)
        original = self._candidate_of(turn, edited_from)
        if original.source == "edit":
            raise StorageError("edit one of the model's replies, not an earlier rewrite")
        if not text.strip():
            raise StorageError("the edited reply is empty; write the reply you want, or "
                               "cancel")
        if same_reply(text, original.text):
            raise StorageError("the edited reply is the same as the original; change it, or "
                               "pick the original with Best")
        generated = [c for c in turn.candidates if c.source != "edit"]
        others = rejected_side(generated, None, chosen_text=text)
        if original not in others:
            others.append(original)
        index = max((c.index for c in turn.candidates), default=-1) + 1
        cand = Candidate(index=index, text=text, finish_reason="stop", source="edit",
                         edited_from=original.id, position=None)
        label = self._write_label(turn, "edit", "edit", None, others, top=model_top_candidate_id,
                                  shown=shown, new_candidate=cand)
        return label, cand

    def _candidate_of(self, turn: Turn, candidate_id: int) -> Candidate:
        for cand in turn.candidates:
            if cand.id == candidate_id:
                return cand
        raise StorageError(f"candidate {candidate_id} is not part of turn {turn.id}")

    def _write_label(self, turn: Turn, source: str, kind: str, chosen_id: int | None,
                     others: Sequence[Candidate], *, reason: str | None = None,
                     top: int | None = None, members: Sequence[int] = (),
                     shown: Shown | None = None, new_candidate: Candidate | None = None,
                     ranked: Sequence[tuple[Candidate, Candidate, float]] = ()) -> int:
        assert turn.id is not None
        shown = shown or Shown(blind=turn.blind)
        now = time.time()
        prompt = messages_json(turn.messages)
        with self._db.transaction() as c:
            c.execute("DELETE FROM labels WHERE turn_id = ? AND source IN ('pick', 'edit')",
                      (turn.id,))
            self._conversations.drop_rewrites_in(c, turn.id)
            if new_candidate is not None:
                new_candidate.turn_id = turn.id
                new_candidate.id = chosen_id = self._conversations.insert_candidate_in(
                    c, turn.id, new_candidate)
            cur = c.execute(
                "INSERT INTO labels (created_at, source, turn_id, chosen_candidate_id,"
                " model_top_candidate_id, reason, kind, members_json, time_to_pick_s,"
                " reward_version, blind, shown_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, source, turn.id, chosen_id, top, reason, kind,
                 json.dumps(list(members)) if members else None, shown.time_to_pick_s,
                 shown.reward_version, int(shown.blind), _shown_json(shown)),
            )
            label_id = int(cur.lastrowid or 0)
            chosen_text = new_candidate.text if new_candidate is not None else next(
                (k.text for k in turn.candidates if k.id == chosen_id), "")
            rows = [(chosen_text, o.text, chosen_id, o.id, 1.0) for o in others]
            rows += [(b.text, w.text, b.id, w.id, weight) for b, w, weight in ranked]
            if kind not in NO_PAIR_KINDS:
                self._pairs.add_for_label_in(c, label_id, prompt, rows, reason, source, now)
            self._conversations.mark_labeled_in(c, turn.id, shown.blind or turn.blind,
                                                shown.positions)
        return label_id

    def set_reason(self, label_id: int, reason: str | None) -> None:
        """Attach (or clear) the one-line reason of a label and its pairs."""
        reason = (reason or "").strip() or None
        with self._db.transaction() as c:
            c.execute("UPDATE labels SET reason = ? WHERE id = ?", (reason, label_id))
            self._pairs.set_reason_in(c, label_id, reason)

    def delete(self, label_id: int) -> int:
        """Undo a label with all its pairs (the schema cascades to them) and the rewrite an
        edit label stored. Returns the number of pairs removed."""
        with self._db.transaction() as c:
            n = self._pairs.count_of_label(label_id)
            row = c.execute("SELECT kind, chosen_candidate_id FROM labels WHERE id = ?",
                            (label_id,)).fetchone()
            c.execute("DELETE FROM labels WHERE id = ?", (label_id,))
            if row is not None and row[0] == "edit" and row[1] is not None:
                self._conversations.drop_rewrite_in(c, int(row[1]))
        return n

    def of_turn(self, turn_id: int) -> tuple[str, int | None, tuple[int, ...]] | None:
        """The turn's chat label: (kind, chosen candidate id, members), or None
        (:func:`chat_label_of`)."""
        return chat_label_of(self._db.conn, turn_id)

    # ------------------------------------------------------------------ inside a pairs write

    @staticmethod
    def add_for_pair_in(c: sqlite3.Connection, created: float, source: str,
                        reason: str | None) -> int:
        """A label of its own for a pair that did not come from a pick (an import); its id."""
        cur = c.execute(
            "INSERT INTO labels (created_at, source, reason, kind) VALUES (?, ?, ?, ?)",
            (created, source, reason, source),
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def drop_without_pairs_in(c: sqlite3.Connection, label_ids: Sequence[int]) -> None:
        """Delete the labels left without pairs (a tie or all-bad label, which never had
        pairs, stays)."""
        c.executemany("DELETE FROM labels WHERE id = ? AND NOT EXISTS"
                      " (SELECT 1 FROM pairs WHERE label_id = ?)",
                      [(lab, lab) for lab in label_ids])

    @staticmethod
    def restore_in(c: sqlite3.Connection, labels: Sequence[dict[str, Any]]) -> dict[int, int]:
        """Put deleted labels' stored rows back; ``{old id: id}``. A label that still
        exists is reused; an id taken in the meantime gets a new one."""
        label_ids: dict[int, int] = {}
        for label in labels:
            old = int(label["id"])
            same = c.execute("SELECT 1 FROM labels WHERE id = ? AND created_at = ? AND"
                             " source = ?", (old, label["created_at"], label["source"]))
            if same.fetchone() is not None:
                label_ids[old] = old
            else:
                label_ids[old] = restore_row(c, "labels", label)
        return label_ids

    # ------------------------------------------------------------------ reading labels

    def count(self) -> int:
        """How many labels the reward model learns from (picks, rankings, edits, imports;
        ties and all-bad flags make no pairs and are not counted)."""
        marks = ",".join("?" * len(NO_PAIR_KINDS))
        return int(self._db.conn.execute(
            f"SELECT COUNT(*) FROM labels WHERE kind NOT IN ({marks})", NO_PAIR_KINDS
        ).fetchone()[0])

    def kinds(self) -> dict[str, int]:
        """How many labels of each kind."""
        return {str(k): int(n) for k, n in
                self._db.conn.execute("SELECT kind, COUNT(*) FROM labels GROUP BY kind")}

    def last(self) -> Label | None:
        """The most recent label."""
        labels = self.recent(1)
        return labels[0] if labels else None

    def recent(self, limit: int, source: str | None = None,
                      kind: str | None = None, blind: bool | None = None) -> list[Label]:
        """The newest labels first (of one source, kind, or blind or not, when given)."""
        where: list[str] = []
        args: list[Any] = []
        for clause, value in (("l.source = ?", source), ("l.kind = ?", kind)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if blind is not None:
            where.append("COALESCE(l.blind, 0) = ?")
            args.append(int(blind))
        sql = f"SELECT {_LABEL_COLUMNS} FROM labels l"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.conn.execute(sql + " ORDER BY l.id DESC LIMIT ?", [*args, limit])
        return [Label(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], kind=str(r[8]),
                      blind=bool(r[9])) for r in rows]

    def agreement_rate(self, last: int = 50, blind: bool | None = None
                       ) -> tuple[float | None, int]:
        """Share of the last ``last`` picks (blind ones only, or not blind only, when given)
        where the pick was the model's top-ranked reply."""
        picks = [lab for lab in self.recent(last, kind="pick", blind=blind)
                 if lab.model_top_candidate_id is not None]
        if not picks:
            return None, 0
        agreed = sum(1 for lab in picks if lab.model_top_candidate_id == lab.chosen_candidate_id)
        return agreed / len(picks), len(picks)

    def pick_positions(self, last: int = 200) -> list[tuple[int, int]]:
        """(display position of the pick, cards shown) of the last ``last`` picks whose
        positions were recorded, newest first."""
        rows = self._db.conn.execute(
            "SELECT chosen_candidate_id, shown_json FROM labels WHERE kind = 'pick' AND"
            " shown_json IS NOT NULL ORDER BY id DESC LIMIT ?", (last,))
        found: list[tuple[int, int]] = []
        for chosen, shown in rows:
            positions = json.loads(shown).get("positions", {})
            where = positions.get(str(chosen))
            if where is not None and len(positions) >= 2:
                found.append((int(where), len(positions)))
        return found

    def times(self) -> list[float]:
        """When each label the reward model learns from was recorded, oldest first (labels
        over time; the same labels as :meth:`count`)."""
        marks = ",".join("?" * len(NO_PAIR_KINDS))
        return [float(r[0]) for r in self._db.conn.execute(
            f"SELECT created_at FROM labels WHERE kind NOT IN ({marks}) ORDER BY id",
            NO_PAIR_KINDS)]

    # ------------------------------------------------------------------ chat labels

    def of_chat(self) -> Iterator[tuple[int, Turn]]:
        """Every label given on a turn of the chat that still exists (oldest first), with
        its turn: for the per-turn labels export (ties and all-bad flags included)."""
        rows = self._db.conn.execute(
            "SELECT l.id, l.turn_id FROM labels l JOIN turns t ON t.id = l.turn_id"
            " WHERE l.source IN ('pick', 'edit') ORDER BY l.id").fetchall()
        for label_id, turn_id in rows:
            yield int(label_id), self._conversations.get_turn(int(turn_id))
