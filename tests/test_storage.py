import sqlite3

import pytest

from rlhf_desktop import config
from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.storage.db import DatabaseError, connect, schema_version
from rlhf_desktop.storage.migrations import MIGRATIONS
from rlhf_desktop.storage.repo import Repository, StorageError
from tests.helpers import make_turn


def test_database_lives_in_the_redirected_data_folder(data_home):
    repo = Repository.open()
    repo.close()
    assert config.db_path() == data_home / "rlhf.sqlite3"
    assert config.db_path().exists()


def test_migrations_apply_once_and_are_recorded(data_home):
    conn = connect()
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]
    conn.close()
    conn = connect()  # reopening applies nothing again
    assert len(conn.execute("SELECT * FROM schema_migrations").fetchall()) == len(MIGRATIONS)
    assert schema_version(conn) == MIGRATIONS[-1][0]
    conn.close()


def test_migration_numbers_are_unique_and_increasing():
    numbers = [m[0] for m in MIGRATIONS]
    assert numbers == sorted(set(numbers))
    assert numbers[0] == 1


def test_newer_schema_is_refused(data_home):
    conn = connect()
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    conn.close()
    with pytest.raises(DatabaseError, match="newer"):
        connect()


def test_corrupt_database_is_kept_and_reported(data_home):
    path = config.db_path()
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError) as info:
        connect()
    assert "copy" in str(info.value)
    backups = list(data_home.glob("rlhf.sqlite3.corrupt-*"))
    assert backups and backups[0].read_bytes() == b"this is not a database" * 100
    assert path.read_bytes() == b"this is not a database" * 100  # not overwritten


def test_pick_records_n_minus_one_pairs_in_one_label(data_home):
    repo = Repository.open()
    turn = make_turn(repo, ["a", "b", "c", "d"])
    chosen = turn.candidates[1]
    label = repo.labels.pick(turn.id, chosen.id, reason="clearer")
    pairs = repo.pairs.list_all()
    assert len(pairs) == 3
    assert {p.rejected for p in pairs} == {"a", "c", "d"}
    assert all(p.chosen == "b" and p.label_id == label and p.source == "pick" for p in pairs)
    assert all(p.reason == "clearer" for p in pairs)
    assert pairs[0].prompt == (Message("user", "Explain gravity"),)
    assert repo.conversations.get_turn(turn.id).chosen_candidate_id == chosen.id


def test_repick_replaces_and_undo_removes(data_home):
    repo = Repository.open()
    turn = make_turn(repo, ["a", "b", "c"])
    repo.labels.pick(turn.id, turn.candidates[0].id)
    label = repo.labels.pick(turn.id, turn.candidates[2].id)
    assert repo.labels.count() == 1
    assert {p.chosen for p in repo.pairs.list_all()} == {"c"}
    repo.labels.set_reason(label, "  shorter ")
    assert {p.reason for p in repo.pairs.list_all()} == {"shorter"}
    assert repo.labels.delete(label) == 2
    assert repo.pairs.count() == 0 and repo.labels.count() == 0


def test_pick_rejects_foreign_or_empty_candidates(data_home):
    repo = Repository.open()
    turn = make_turn(repo, ["a", ""])
    other = make_turn(repo, ["x", "y"])
    with pytest.raises(StorageError):
        repo.labels.pick(turn.id, other.candidates[0].id)
    with pytest.raises(StorageError, match="at least one other"):
        repo.labels.pick(turn.id, turn.candidates[0].id)
    assert repo.pairs.count() == 0


def test_a_label_whose_pairs_or_turn_cannot_be_written_leaves_nothing(data_home):
    """A label, its pairs, its rewrite and the turn's display are written by three
    repositories in one transaction: a failure in the last write undoes the others."""
    repo = Repository.open()
    turn = make_turn(repo, ["a", "b", "c"])
    first = repo.labels.pick(turn.id, turn.candidates[0].id)
    repo.conn.execute("CREATE TRIGGER refuse_turn BEFORE UPDATE OF skipped_at ON turns"
                      " BEGIN SELECT RAISE(ABORT, 'turn write refused'); END")
    with pytest.raises(sqlite3.IntegrityError, match="turn write refused"):
        repo.labels.edit(turn.id, turn.candidates[1].id, "b, but better")
    assert repo.labels.of_turn(turn.id) == ("pick", turn.candidates[0].id, ())
    assert [p.label_id for p in repo.pairs.list_all()] == [first, first]
    assert [c.source for c in repo.conversations.get_turn(turn.id).candidates] == ["model"] * 3
    repo.conn.execute("DROP TRIGGER refuse_turn")
    repo.conn.execute("CREATE TRIGGER refuse_pairs BEFORE INSERT ON pairs"
                      " BEGIN SELECT RAISE(ABORT, 'pair write refused'); END")
    with pytest.raises(sqlite3.IntegrityError, match="pair write refused"):
        repo.labels.pick(turn.id, turn.candidates[2].id)
    with pytest.raises(sqlite3.IntegrityError, match="pair write refused"):
        repo.pairs.add([PreferencePair(prompt=(Message("user", "q"),), chosen="x",
                                       rejected="y")])
    assert repo.labels.of_turn(turn.id) == ("pick", turn.candidates[0].id, ())
    assert repo.labels.count() == 1 and repo.pairs.count() == 2


def test_add_pairs_is_all_or_nothing(data_home):
    repo = Repository.open()
    good = PreferencePair(prompt=(Message("user", "q"),), chosen="a", rejected="b")
    assert repo.pairs.add([good]) == 1
    bad = PreferencePair(prompt=(Message("user", "q"),), chosen="a", rejected=None)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        repo.pairs.add([good, good, bad])
    assert repo.pairs.count() == 1


def test_conversations_search_rename_delete(data_home):
    repo = Repository.open()
    turn = make_turn(repo, ["the ocean speaks", "waves"], prompt="Describe the sea")
    conv_id = turn.conversation_id
    other = repo.conversations.create("Groceries")
    assert [c.id for c in repo.conversations.list_all("ocean")] == [conv_id]
    assert [c.id for c in repo.conversations.list_all("sea")] == [conv_id]
    repo.conversations.rename(other.id, "Shopping list")
    assert [c.title for c in repo.conversations.list_all("Shopping")] == ["Shopping list"]
    repo.labels.pick(turn.id, turn.candidates[0].id)
    repo.conversations.delete(conv_id)
    assert [c.id for c in repo.conversations.list_all()] == [other.id]
    assert repo.pairs.count() == 1  # labels outlive the chat they came from


def test_pages_filter_and_delete(data_home):
    repo = Repository.open()
    repo.pairs.add([
        PreferencePair(prompt=(Message("user", f"q{i}"),), chosen=f"good {i}", rejected="bad")
        for i in range(30)
    ])
    assert repo.pairs.count() == 30
    page = repo.pairs.page(0, 10)
    assert [p.chosen for p in page][:2] == ["good 29", "good 28"]
    assert repo.pairs.count("good 1") == 11  # 1, 10..19
    removed = repo.pairs.delete([p.id for p in page])
    assert removed == 10 and repo.pairs.count() == 20 and repo.labels.count() == 20


def test_model_versions_and_embeddings(data_home):
    import numpy as np

    repo = Repository.open()
    first = repo.versions.add(lambda n: f"/x/v{n}", {"cv_accuracy": 0.6}, 10, 5)
    assert first.version == 1 and repo.versions.latest().cv_accuracy == 0.6
    assert repo.versions.add(lambda n: f"/x/v{n}", {}, 11, 6).version == 2
    vec = np.arange(4, dtype=np.float32)
    repo.embeddings.put("e", {b"h": vec})
    assert np.array_equal(repo.embeddings.get("e", [b"h", b"missing"])[b"h"], vec)
    assert repo.embeddings.get("other", [b"h"]) == {}


def test_agreement_rate(data_home):
    repo = Repository.open()
    for chosen, top in [(0, 0), (1, 0), (2, 2)]:
        turn = make_turn(repo, ["a", "b", "c"])
        ids = [c.id for c in turn.candidates]
        repo.labels.pick(turn.id, ids[chosen], model_top_candidate_id=ids[top])
    rate, n = repo.labels.agreement_rate()
    assert n == 3 and rate == pytest.approx(2 / 3)


def test_keyset_pages_cover_every_pair_once_with_and_without_filter(data_home):
    repo = Repository.open()
    repo.pairs.add([
        PreferencePair(prompt=(Message("user", f"q{i}"),), chosen=f"good {i}",
                       rejected="bad" if i % 3 else "match me")
        for i in range(25)
    ])
    for text_filter, expected in (("", 25), ("match me", 9)):
        seen, before = [], None
        while page := repo.pairs.rows(before, 4, text_filter):
            seen += page
            before = page[-1][0]
        assert len(seen) == expected == repo.pairs.count(text_filter)
        assert [r[0] for r in seen] == sorted({r[0] for r in seen}, reverse=True)
    row = repo.pairs.rows(None, 1)[0]
    assert row[1] == "q24" and row[2] == "good 24"
    assert repo.pairs.get(row[0]).chosen == "good 24"
    with pytest.raises(StorageError):
        repo.pairs.get(10_000)
