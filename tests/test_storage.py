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
    label = repo.record_pick(turn.id, chosen.id, reason="clearer")
    pairs = repo.all_pairs()
    assert len(pairs) == 3
    assert {p.rejected for p in pairs} == {"a", "c", "d"}
    assert all(p.chosen == "b" and p.label_id == label and p.source == "pick" for p in pairs)
    assert all(p.reason == "clearer" for p in pairs)
    assert pairs[0].prompt == (Message("user", "Explain gravity"),)
    assert repo.get_turn(turn.id).chosen_candidate_id == chosen.id


def test_repick_replaces_and_undo_removes(data_home):
    repo = Repository.open()
    turn = make_turn(repo, ["a", "b", "c"])
    repo.record_pick(turn.id, turn.candidates[0].id)
    label = repo.record_pick(turn.id, turn.candidates[2].id)
    assert repo.count_labels() == 1
    assert {p.chosen for p in repo.all_pairs()} == {"c"}
    repo.set_label_reason(label, "  shorter ")
    assert {p.reason for p in repo.all_pairs()} == {"shorter"}
    assert repo.delete_label(label) == 2
    assert repo.count_pairs() == 0 and repo.count_labels() == 0


def test_pick_rejects_foreign_or_empty_candidates(data_home):
    repo = Repository.open()
    turn = make_turn(repo, ["a", ""])
    other = make_turn(repo, ["x", "y"])
    with pytest.raises(StorageError):
        repo.record_pick(turn.id, other.candidates[0].id)
    with pytest.raises(StorageError, match="at least one other"):
        repo.record_pick(turn.id, turn.candidates[0].id)
    assert repo.count_pairs() == 0


def test_add_pairs_is_all_or_nothing(data_home):
    repo = Repository.open()
    good = PreferencePair(prompt=(Message("user", "q"),), chosen="a", rejected="b")
    assert repo.add_pairs([good]) == 1
    bad = PreferencePair(prompt=(Message("user", "q"),), chosen="a", rejected=None)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        repo.add_pairs([good, good, bad])
    assert repo.count_pairs() == 1


def test_conversations_search_rename_delete(data_home):
    repo = Repository.open()
    turn = make_turn(repo, ["the ocean speaks", "waves"], prompt="Describe the sea")
    conv_id = turn.conversation_id
    other = repo.create_conversation("Groceries")
    assert [c.id for c in repo.list_conversations("ocean")] == [conv_id]
    assert [c.id for c in repo.list_conversations("sea")] == [conv_id]
    repo.rename_conversation(other.id, "Shopping list")
    assert [c.title for c in repo.list_conversations("Shopping")] == ["Shopping list"]
    repo.record_pick(turn.id, turn.candidates[0].id)
    repo.delete_conversation(conv_id)
    assert [c.id for c in repo.list_conversations()] == [other.id]
    assert repo.count_pairs() == 1  # labels outlive the chat they came from


def test_pages_filter_and_delete(data_home):
    repo = Repository.open()
    repo.add_pairs([
        PreferencePair(prompt=(Message("user", f"q{i}"),), chosen=f"good {i}", rejected="bad")
        for i in range(30)
    ])
    assert repo.count_pairs() == 30
    page = repo.pairs_page(0, 10)
    assert [p.chosen for p in page][:2] == ["good 29", "good 28"]
    assert repo.count_pairs("good 1") == 11  # 1, 10..19
    removed = repo.delete_pairs([p.id for p in page])
    assert removed == 10 and repo.count_pairs() == 20 and repo.count_labels() == 20


def test_model_versions_and_embeddings(data_home):
    import numpy as np

    repo = Repository.open()
    first = repo.add_model_version(lambda n: f"/x/v{n}", {"cv_accuracy": 0.6}, 10, 5)
    assert first.version == 1 and repo.latest_model_version().cv_accuracy == 0.6
    assert repo.add_model_version(lambda n: f"/x/v{n}", {}, 11, 6).version == 2
    vec = np.arange(4, dtype=np.float32)
    repo.put_embeddings("e", {b"h": vec})
    assert np.array_equal(repo.get_embeddings("e", [b"h", b"missing"])[b"h"], vec)
    assert repo.get_embeddings("other", [b"h"]) == {}


def test_agreement_rate(data_home):
    repo = Repository.open()
    for chosen, top in [(0, 0), (1, 0), (2, 2)]:
        turn = make_turn(repo, ["a", "b", "c"])
        ids = [c.id for c in turn.candidates]
        repo.record_pick(turn.id, ids[chosen], model_top_candidate_id=ids[top])
    rate, n = repo.agreement_rate()
    assert n == 3 and rate == pytest.approx(2 / 3)


def test_keyset_pages_cover_every_pair_once_with_and_without_filter(data_home):
    repo = Repository.open()
    repo.add_pairs([
        PreferencePair(prompt=(Message("user", f"q{i}"),), chosen=f"good {i}",
                       rejected="bad" if i % 3 else "match me")
        for i in range(25)
    ])
    for text_filter, expected in (("", 25), ("match me", 9)):
        seen, before = [], None
        while page := repo.pair_rows(before, 4, text_filter):
            seen += page
            before = page[-1][0]
        assert len(seen) == expected == repo.count_pairs(text_filter)
        assert [r[0] for r in seen] == sorted({r[0] for r in seen}, reverse=True)
    row = repo.pair_rows(None, 1)[0]
    assert row[1] == "q24" and row[2] == "good 24"
    assert repo.get_pair(row[0]).chosen == "good 24"
    with pytest.raises(StorageError):
        repo.get_pair(10_000)
