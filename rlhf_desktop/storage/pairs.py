"""Preference pairs (the ``pairs`` table): ``repo.pairs``. A pick's pairs are written by
:class:`~rlhf_desktop.storage.labels.Labels` inside its transaction
(:meth:`Pairs.add_for_label_in`); imported pairs come each with a label of its own
(:meth:`Pairs.add`, which asks the labels to write inside its transaction)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rlhf_desktop.core.pick_rules import CUT, same_reply
from rlhf_desktop.domain import PAIR_SOURCES, Message, PreferencePair, last_user_text
from rlhf_desktop.storage.database import (
    Database,
    StorageError,
    in_chunks,
    messages_from_json,
    messages_json,
    restore_row,
)
from rlhf_desktop.storage.labels import Labels
from rlhf_desktop.storage.provenance import Provenance

__all__ = ["NOTE_CUT", "NOTE_SAME", "DeletedPairs", "PairRow", "Pairs", "like_pattern",
           "matched_in"]

PairRow = tuple[int, str, str, str, str | None, str, float, str, str]
"""(id, last user message, chosen, rejected, reason, source, created_at, matched in, note)

``matched in`` names where the text filter was found ("prompt", "earlier turn",
"chosen", ...), empty without a filter. ``note`` says what a reader of the pair must know:
"rejected cut at max tokens" (:func:`~rlhf_desktop.core.pick_rules.is_cut`), "same
reply on both sides: never exported" (a pair stored before identical replies became a
tie), or ""."""

NOTE_CUT = "rejected cut at max tokens"
NOTE_SAME = "same reply on both sides: never exported"


# The words of the stored prompt JSON's structure: its keys and roles.
_ROLES = ("user", "assistant", "system", "tool", "developer", "function")
_JSON_WORDS = ("role", "content", *_ROLES)


def _prompt_text_sql() -> str:
    """SQL for ``prompt_json`` with the JSON between the messages' texts replaced by a
    newline (which the JSON of a text never holds: it escapes it as ``\\n``). The JSON is
    always written as ``[{"role": "user", "content": "..."}, ...]``
    (:func:`~rlhf_desktop.storage.database.messages_json`);
    REPLACE is far cheaper than parsing every row's JSON."""
    expr = "prompt_json"
    for role in _ROLES:
        for lead in ("[", '"}, '):
            expr = f"""REPLACE({expr}, '{lead}{{"role": "{role}", "content": "', char(10))"""
    return f"""REPLACE({expr}, '"}}]', char(10))"""


_PROMPT_TEXT = _prompt_text_sql()

def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern that matches it literally anywhere (ESCAPE '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matched_in(text_filter: str, messages: Sequence[Message], chosen: str, rejected: str,
               reason: str | None) -> str:
    """Where ``text_filter`` occurs in a pair, for the dataset view ("" without a filter).

    Case-insensitive like SQLite's LIKE; the last user message is "prompt", the messages
    before it "earlier turn" (or "system prompt")."""
    needle = text_filter.lower()
    if not needle:
        return ""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    places: list[str] = []
    if last >= 0 and needle in messages[last].content.lower():
        places.append("prompt")
    for i, m in enumerate(messages):
        if i != last and needle in m.content.lower():
            where = "system prompt" if m.role == "system" else "earlier turn"
            if where not in places:
                places.append(where)
    for name, text in (("chosen", chosen), ("rejected", rejected), ("reason", reason or "")):
        if needle in text.lower():
            places.append(name)
    return ", ".join(places)


@dataclass(frozen=True)
class DeletedPairs:
    """Deleted pairs and the labels they took with them, as stored rows (for undo)."""

    labels: tuple[dict[str, Any], ...]
    pairs: tuple[dict[str, Any], ...]


class Pairs:
    """Writes and reads of preference pairs. The ``*_in`` methods write inside a transaction
    another repository holds (a label's write), on the connection it passes."""

    def __init__(self, db: Database, provenance: Provenance) -> None:
        self._db = db
        self._provenance = provenance

    _PAIR_COLUMNS = (
        "id, label_id, prompt_json, chosen, rejected, reason, source, created_at,"
        " chosen_candidate_id, rejected_candidate_id, weight"
    )

    @staticmethod
    def _pair(r: tuple[Any, ...]) -> PreferencePair:
        return PreferencePair(
            id=r[0], label_id=r[1], prompt=tuple(messages_from_json(r[2])), chosen=r[3],
            rejected=r[4], reason=r[5], source=r[6], created_at=r[7], chosen_candidate_id=r[8],
            rejected_candidate_id=r[9], weight=float(r[10]),
        )

    # ------------------------------------------------------------------ writes

    def add(self, pairs: Sequence[PreferencePair], source: str = "import") -> int:
        """Store pairs that did not come from a pick, each as its own label, all or nothing."""
        if source not in PAIR_SOURCES:
            raise StorageError(f"source must be one of {PAIR_SOURCES}")
        now = time.time()
        with self._db.transaction() as c:
            for pair in pairs:
                created = pair.created_at or now
                label_id = Labels.add_for_pair_in(c, created, source, pair.reason)
                c.execute(
                    "INSERT INTO pairs (label_id, prompt_json, chosen, rejected, reason, source,"
                    " created_at, weight) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        label_id,
                        messages_json(pair.prompt),
                        pair.chosen,
                        pair.rejected,
                        pair.reason,
                        source,
                        created,
                        pair.weight,
                    ),
                )
        return len(pairs)

    def delete(self, pair_ids: Sequence[int]) -> int:
        """Delete pairs; a label left without pairs goes too (a tie or all-bad label, which
        never had pairs, stays)."""
        with self._db.transaction() as c:
            removed = 0
            for chunk, marks in in_chunks(pair_ids):
                labels = [r[0] for r in c.execute(
                    f"SELECT DISTINCT label_id FROM pairs WHERE id IN ({marks})", chunk)]
                removed += c.execute(f"DELETE FROM pairs WHERE id IN ({marks})", chunk).rowcount
                Labels.drop_without_pairs_in(c, labels)
        return removed

    @staticmethod
    def add_for_label_in(c: sqlite3.Connection, label_id: int, prompt_json: str,
                         rows: Sequence[tuple[str, str, int | None, int | None, float]],
                         reason: str | None, source: str, created: float) -> None:
        """A label's pairs, ``rows`` = (chosen text, rejected text, chosen id, rejected id,
        weight), inside the transaction of ``c`` that writes the label."""
        c.executemany(
            "INSERT INTO pairs (label_id, prompt_json, chosen, rejected,"
            " chosen_candidate_id, rejected_candidate_id, reason, source, created_at,"
            " weight) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(label_id, prompt_json, better, worse, better_id, worse_id, reason, source,
              created, weight) for better, worse, better_id, worse_id, weight in rows],
        )

    @staticmethod
    def set_reason_in(c: sqlite3.Connection, label_id: int, reason: str | None) -> None:
        """Set the reason of a label's pairs, inside the transaction that sets the label's."""
        c.execute("UPDATE pairs SET reason = ? WHERE label_id = ?", (reason, label_id))

    # ------------------------------------------------------------------ reads

    def stream(self, text_filter: str = "", metadata: bool = True
                   ) -> Iterator[PreferencePair]:
        """Every pair, oldest first, streamed; with its provenance in ``metadata`` when
        asked (read 500 pairs at a time). A pair whose two replies are the same reply
        (:func:`~rlhf_desktop.core.pick_rules.same_reply`, stored before that rule) is a
        tie, never a preference: it is left out of every read for exports and training
        (the dataset view still lists it, to be deleted)."""
        sql, args = self._pair_query(text_filter)
        cur = self._db.conn.execute(sql + " ORDER BY id", args)
        while rows := cur.fetchmany(500):
            pairs = [p for p in (self._pair(row) for row in rows)
                     if not same_reply(p.chosen, p.rejected)]
            yield from self._provenance.with_metadata(pairs) if metadata else pairs

    def list_all(self) -> list[PreferencePair]:
        """Every pair, oldest first (without metadata: what training reads; see
        :meth:`cut_ids` for the pairs whose rejected reply was cut)."""
        return list(self.stream(metadata=False))

    def cut_ids(self) -> set[int]:
        """The ids of the pairs whose rejected reply the server cut at max tokens (finish
        reason ``length``; :func:`~rlhf_desktop.core.pick_rules.is_cut`): the pairs
        ``metadata["rejected_cut"]`` flags. Imported pairs have no stored reply: never."""
        return {int(r[0]) for r in self._db.conn.execute(
            "SELECT p.id FROM pairs p JOIN candidates k ON k.id = p.rejected_candidate_id"
            " WHERE k.finish_reason = ?", (CUT,))}

    def _pair_query(self, text_filter: str) -> tuple[str, list[Any]]:
        sql = f"SELECT {self._PAIR_COLUMNS} FROM pairs"
        if not text_filter:
            return sql, []
        like = like_pattern(text_filter)
        # The prompt matches on its messages' text, never on the JSON around it: the
        # filter, escaped as JSON escapes it, is looked for in the JSON. Only a filter
        # that could be part of the JSON's structure ("role", "content", "user", "s",
        # punctuation) needs the slower look with that structure cut out (_PROMPT_TEXT).
        in_json = like_pattern(json.dumps(text_filter, ensure_ascii=False)[1:-1])
        needle = text_filter.lower()
        if any(needle in word for word in _JSON_WORDS) or not needle.strip(' ,:{}[]"'):
            prompt, args = f"(prompt_json LIKE ? ESCAPE '\\' AND {_PROMPT_TEXT} LIKE ?" \
                " ESCAPE '\\')", [in_json, in_json]
        else:
            prompt, args = "prompt_json LIKE ? ESCAPE '\\'", [in_json]
        where = (f" WHERE ({prompt} OR chosen LIKE ? ESCAPE '\\'"
                 " OR rejected LIKE ? ESCAPE '\\' OR reason LIKE ? ESCAPE '\\')")
        return sql + where, [*args, like, like, like]

    def page(self, offset: int, limit: int, text_filter: str = "") -> list[PreferencePair]:
        """A page of pairs, newest first (for the lazily loaded dataset view)."""
        sql, args = self._pair_query(text_filter)
        rows = self._db.conn.execute(sql + " ORDER BY id DESC LIMIT ? OFFSET ?",
                                     [*args, limit, offset])
        return [self._pair(r) for r in rows]

    def rows(self, before_id: int | None, limit: int, text_filter: str = ""
                  ) -> list[PairRow]:
        """A page of light rows, newest first, after ``before_id`` (keyset paging: every
        page costs the same, however deep). Rows are tuples of text and numbers only, so a
        view holding 100k of them gives the garbage collector nothing to walk."""
        sql, args = self._pair_query(text_filter)
        # the label's kind where there is one ("ranking", not its source "pick")
        sql = sql.replace(self._PAIR_COLUMNS, "id, prompt_json, chosen, rejected, reason,"
                          " COALESCE((SELECT l.kind FROM labels l WHERE l.id = pairs.label_id"
                          "), source), created_at,"
                          " (SELECT k.finish_reason FROM candidates k"
                          " WHERE k.id = pairs.rejected_candidate_id)")
        if before_id is not None:
            sql += (" AND" if args else " WHERE") + " id < ?"
            args = [*args, before_id]
        rows = self._db.conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        out: list[PairRow] = []
        for r in rows:
            messages = messages_from_json(r[1])
            note = NOTE_SAME if same_reply(r[2], r[3]) else NOTE_CUT if r[7] == CUT else ""
            out.append((r[0], last_user_text(messages), r[2], r[3], r[4], r[5], r[6],
                        matched_in(text_filter, messages, r[2], r[3], r[4]), note))
        return out

    def get(self, pair_id: int) -> PreferencePair:
        """One pair by id."""
        row = self._db.conn.execute(
            f"SELECT {self._PAIR_COLUMNS} FROM pairs WHERE id = ?", (pair_id,)
        ).fetchone()
        if row is None:
            raise StorageError(f"no pair {pair_id}")
        return self._pair(row)

    def count(self, text_filter: str = "") -> int:
        """How many pairs (matching the filter)."""
        sql, args = self._pair_query(text_filter)
        return int(self._db.conn.execute(f"SELECT COUNT(*) FROM ({sql})", args).fetchone()[0])

    def count_by_source(self) -> dict[str, int]:
        """How many pairs of each source."""
        return {str(k): int(n) for k, n in self._db.conn.execute(
            "SELECT source, COUNT(*) FROM pairs GROUP BY source")}

    def count_of_label(self, label_id: int) -> int:
        """How many pairs a label made."""
        return int(self._db.conn.execute("SELECT COUNT(*) FROM pairs WHERE label_id = ?",
                                         (label_id,)).fetchone()[0])

    # ------------------------------------------------------------------ undo of a delete

    def snapshot(self, pair_ids: Sequence[int]) -> DeletedPairs:
        """The stored rows of these pairs and of their labels, taken before a delete."""
        pairs: list[dict[str, Any]] = []
        for chunk, marks in in_chunks(pair_ids):
            pairs += self._dict_rows(f"SELECT * FROM pairs WHERE id IN ({marks})", chunk)
        label_ids = sorted({int(p["label_id"]) for p in pairs})
        labels: list[dict[str, Any]] = []
        for chunk, marks in in_chunks(label_ids):
            labels += self._dict_rows(f"SELECT * FROM labels WHERE id IN ({marks})", chunk)
        return DeletedPairs(tuple(labels), tuple(pairs))

    def _dict_rows(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        cur = self._db.conn.execute(sql, list(args))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def restore(self, deleted: DeletedPairs) -> int:
        """Put deleted pairs (and their labels) back, all or nothing; returns how many.

        A label that still exists is reused. Ids taken in the meantime get new ones, and
        references to turns or replies deleted since become NULL (as a delete would make
        them)."""
        restored = 0
        with self._db.transaction() as c:
            label_ids = Labels.restore_in(c, deleted.labels)
            for pair in deleted.pairs:
                row = {**pair, "label_id": label_ids.get(int(pair["label_id"]),
                                                         pair["label_id"])}
                restore_row(c, "pairs", row)
                restored += 1
        return restored
