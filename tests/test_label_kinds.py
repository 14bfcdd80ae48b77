"""Label kinds (pick, tie, all bad, edit, skip) with provenance, in a real SQLite file."""

from __future__ import annotations

import sqlite3

import pytest

from rlhf_desktop import config
from rlhf_desktop.domain import Turn
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.storage.db import connect
from rlhf_desktop.storage.migrations import MIGRATIONS
from rlhf_desktop.storage.provenance import METADATA_KEYS
from rlhf_desktop.storage.repo import Repository, StorageError
from tests.helpers import make_turn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shown_turn(repo: Repository, texts: list[str], *, blind: bool = False,
               scores: list[float] | None = None) -> Turn:
    """A stored turn, scored by 'model v3', displayed in reverse order."""
    turn = make_turn(repo, texts)
    turn.blind = blind
    for cand, score in zip(turn.candidates, scores or [], strict=False):
        cand.score, cand.model_version = score, 3
    n = len(turn.candidates)
    for cand in turn.candidates:
        cand.position = n - 1 - cand.index
    return turn


def test_migration_2_upgrades_a_version_1_database_and_keeps_its_labels(data_home: object) -> None:
    path = config.db_path()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT"
                " NULL, applied_at REAL NOT NULL)")
    raw.executescript(MIGRATIONS[0][2])
    raw.execute("INSERT INTO schema_migrations VALUES (1, 'initial schema', 0)")
    raw.execute("INSERT INTO labels (created_at, source) VALUES (1, 'import')")
    raw.execute("INSERT INTO labels (created_at, source) VALUES (2, 'pick')")
    raw.close()
    conn = connect(path)
    kinds = [r[0] for r in conn.execute("SELECT kind FROM labels ORDER BY id")]
    assert kinds == ["import", "pick"]
    columns = {r[1] for r in conn.execute("PRAGMA table_info(candidates)")}
    assert {"position", "source", "edited_from"} <= columns
    conn.close()


def test_pick_keeps_what_the_user_saw(data_home: object) -> None:
    repo = Repository.open()
    clock = Clock()
    labeling = LabelingService(repo, clock)
    turn = shown_turn(repo, ["a", "bb", "ccc"], blind=True, scores=[0.5, -0.2, 0.1])
    labeling.record_display(turn)
    clock.now += 7.5
    pick = labeling.pick(turn, turn.candidates[2].id or 0)
    assert pick.model_rank == 2 and pick.agreed is False and pick.pairs == 2
    stored = repo.conversations.get_turn(turn.id or 0)
    assert stored.blind and stored.label_kind == "pick"
    assert [c.position for c in stored.candidates] == [2, 1, 0]
    pairs = list(repo.pairs.stream())
    meta = pairs[0].metadata
    assert meta is not None and set(meta) == set(METADATA_KEYS)
    assert meta["label_kind"] == "pick" and meta["blind"] is True
    assert meta["time_to_pick_s"] == pytest.approx(7.5)
    assert meta["reward_model_version"] == 3 and meta["provider"] == "test"
    assert meta["model"] == "test-model" and meta["temperature"] == 0.8
    assert meta["chosen_score"] == pytest.approx(0.1) and meta["chosen_position"] == 0
    assert {p.metadata["rejected_position"] for p in pairs if p.metadata} == {1, 2}
    # a re-rank after the pick changes the candidates' scores, not the label's record
    repo.conversations.set_scores([(c.id or 0, 9.0, 4) for c in turn.candidates])
    again = next(iter(repo.pairs.stream()))
    assert again.metadata is not None and again.metadata["chosen_score"] == pytest.approx(0.1)
    assert repo.pairs.list_all()[0].metadata is None  # training reads no metadata


def test_tie_and_all_bad_make_no_pairs_and_replace_each_other(data_home: object) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = shown_turn(repo, ["a", "b", "c"])
    ids = [c.id or 0 for c in turn.candidates]
    tie = labeling.tie(turn, [ids[0], ids[2]])
    assert tie.pairs == 0 and repo.pairs.count() == 0
    stored = repo.conversations.get_turn(turn.id or 0)
    assert stored.label_kind == "tie" and stored.ranked_candidate_ids == (ids[0], ids[2])
    assert stored.chosen_candidate_id == ids[0]  # the conversation goes on with one of them
    with pytest.raises(StorageError, match="two or more"):
        labeling.tie(turn, [ids[1]])
    labeling.all_bad(turn)
    assert repo.labels.kinds() == {"all_bad": 1}
    assert repo.conversations.get_turn(turn.id or 0).chosen_candidate_id is None
    assert repo.labels.count() == 0  # nothing the reward model learns from
    # deleting other pairs never takes a pair-less label with it
    other = make_turn(repo, ["x", "y"])
    labeling.pick(other, other.candidates[0].id or 0)
    repo.pairs.delete([p.id for p in repo.pairs.stream() if p.id is not None])
    assert repo.labels.kinds() == {"all_bad": 1}


def test_edit_is_chosen_over_every_original_and_undo_removes_it(data_home: object) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = shown_turn(repo, ["a", "b", ""], scores=[0.1, 0.2, 0.0])
    original = turn.candidates[1]
    pick, cand = labeling.edit(turn, original.id or 0, "b, but better")
    assert pick.kind == "edit" and pick.pairs == 2  # over "a" and "b"; the empty one is no pair
    pairs = list(repo.pairs.stream())
    assert {(p.chosen, p.rejected, p.source) for p in pairs} == {
        ("b, but better", "a", "edit"), ("b, but better", "b", "edit")}
    meta = pairs[0].metadata
    assert meta is not None and meta["chosen_source"] == "edit"
    assert meta["edited_from_index"] == 1 and meta["label_kind"] == "edit"
    stored = repo.conversations.get_turn(turn.id or 0)
    assert stored.chosen_candidate_id == cand.id and stored.candidates[-1].source == "edit"
    assert stored.candidates[-1].edited_from == original.id
    with pytest.raises(StorageError, match="same as the original"):
        labeling.edit(turn, original.id or 0, "b")
    with pytest.raises(StorageError, match="already the chosen"):
        labeling.pick(turn, cand.id or 0)  # refused, nothing changes
    assert repo.pairs.count() == 2
    assert repo.conversations.get_turn(turn.id or 0).label_kind == "edit"
    assert labeling.undo() is not None
    assert repo.pairs.count() == 0
    assert len(repo.conversations.get_turn(turn.id or 0).candidates) == 3


def test_a_pick_after_an_edit_drops_the_rewrite(data_home: object) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = shown_turn(repo, ["a", "b"])
    labeling.edit(turn, turn.candidates[0].id or 0, "A!")
    labeling.pick(turn, turn.candidates[1].id or 0)
    stored = repo.conversations.get_turn(turn.id or 0)
    assert [c.text for c in stored.candidates] == ["a", "b"]
    assert {(p.chosen, p.rejected) for p in repo.pairs.stream()} == {("b", "a")}


def test_skip_stores_no_label_and_a_pick_may_follow(data_home: object) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = shown_turn(repo, ["a", "b"])
    labeling.skip(turn)
    stored = repo.conversations.get_turn(turn.id or 0)
    assert stored.skipped and not stored.labeled and repo.labels.kinds() == {}
    labeling.pick(turn, turn.candidates[0].id or 0)
    assert not repo.conversations.get_turn(turn.id or 0).skipped


def test_agreement_counts_blind_picks_only_by_default(data_home: object) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    for blind, chosen in ((False, 0), (False, 0), (True, 1), (True, 0)):
        turn = shown_turn(repo, ["a", "b"], blind=blind, scores=[1.0, 0.0])
        labeling.pick(turn, turn.candidates[chosen].id or 0)
    honest = labeling.agreement()
    assert (honest.rate, honest.picks, honest.blind_only) == (0.5, 2, True)
    assert "blind" in honest.note
    every = labeling.agreement(blind_only=False)
    assert (every.rate, every.picks) == (0.75, 4)


def test_position_bias_compares_first_card_picks_with_chance(data_home: object) -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    assert labeling.position_bias().picks == 0
    for chosen_position, n in ((0, 2), (0, 4), (1, 4), (0, 4)):
        turn = shown_turn(repo, [f"r{i}" for i in range(n)])  # positions: reversed
        chosen = next(c for c in turn.candidates if c.position == chosen_position)
        labeling.pick(turn, chosen.id or 0)
    bias = labeling.position_bias()
    assert bias.picks == 4 and bias.first_share == 0.75
    assert bias.chance == pytest.approx((1 / 2 + 3 / 4) / 4)
    assert bias.words == "you picked the first card 75% of the time (chance 31%, 4 picks)"


def test_labels_over_time_counts_the_labels_the_model_page_counts(data_home: object) -> None:
    """The model page shows labels.count() beside a chart of labels.times(): a tie or an
    all-bad flag (no pairs) is in neither, so the two agree."""
    repo = Repository.open()
    labeling = LabelingService(repo)
    picked, tied, bad = (shown_turn(repo, ["a", "b", "c"]) for _ in range(3))
    labeling.pick(picked, picked.candidates[0].id or 0)
    labeling.tie(tied, [c.id or 0 for c in tied.candidates[:2]])
    labeling.all_bad(bad)
    assert repo.labels.count() == len(repo.labels.times()) == 1
