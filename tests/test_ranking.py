"""Full (and top-k) rankings of a turn's replies in a real SQLite file: the label, its
N(N−1)/2 weighted pairs, refusals, replacing and undoing, the metadata of every pair, the
exports, and the session's hooks and retraining."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Turn
from rlhf_desktop.services.datasets import pairs as datasets
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.storage.provenance import METADATA_KEYS
from rlhf_desktop.storage.repo import Repository, StorageError
from tests.fakes import FakeProvider, HashEmbedder, Reply
from tests.helpers import make_turn


def scored_turn(repo: Repository, texts: list[str]) -> Turn:
    """A stored turn scored by 'model v2' (the last reply highest), shown in order."""
    turn = make_turn(repo, texts)
    for cand in turn.candidates:
        cand.score, cand.model_version, cand.position = cand.index / 10, 2, cand.index
    return turn


def ids(turn: Turn, *indices: int) -> list[int]:
    return [turn.candidates[i].id or 0 for i in indices]


def pair_rows(repo: Repository) -> dict[tuple[str, str], float]:
    return {(p.chosen, p.rejected): p.weight for p in repo.pairs.stream()}


def test_a_full_ranking_is_one_label_with_every_pair_weighted_2_over_n() -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = scored_turn(repo, ["a", "b", "c", "d"])
    order = ids(turn, 2, 0, 3, 1)  # c > a > d > b
    pick = labeling.rank(turn, order)
    assert pick.kind == "ranking" and pick.pairs == 6 and pick.candidate_id == order[0]
    assert pick.agreed is False and pick.model_rank == 2  # the model put d first, c second
    label = repo.labels.last()
    assert label is not None and label.kind == "ranking" and label.source == "pick"
    assert label.chosen_candidate_id == order[0] and label.pair_count == 6
    stored = repo.conversations.get_turn(turn.id or 0)
    assert stored.label_kind == "ranking" and stored.ranked_candidate_ids == tuple(order)
    assert stored.chosen_candidate_id == order[0]
    assert pair_rows(repo) == {
        ("c", "a"): 0.5, ("c", "d"): 0.5, ("c", "b"): 0.5,
        ("a", "d"): 0.5, ("a", "b"): 0.5, ("d", "b"): 0.5,
    }
    assert sum(pair_rows(repo).values()) == pytest.approx(3)  # weighs what a pick of 4 does
    assert repo.labels.count() == 1
    pairs = list(repo.pairs.stream())
    for p in pairs:
        meta = p.metadata
        assert meta is not None and set(meta) == set(METADATA_KEYS)
        assert meta["label_kind"] == "ranking" and meta["weight"] == 0.5
        assert meta["chosen_rank"] == "cadb".index(p.chosen) + 1
        assert meta["rejected_rank"] == "cadb".index(p.rejected) + 1
        assert meta["chosen_rank"] < meta["rejected_rank"]
    assert repo.provenance.of_labels([label.id])[label.id]["ranking"] == order
    # the dataset page's Source column names the label's kind, not its source ("pick")
    assert {row[5] for row in repo.pairs.rows(None, 10)} == {"ranking"}


def test_a_partial_ranking_ranks_the_rest_tied_below_and_keeps_the_turns_weight() -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = scored_turn(repo, ["a", "b", "c", "d"])
    pick = labeling.rank(turn, ids(turn, 3, 1))  # d > b > {a, c}
    assert pick.pairs == 5
    rows = pair_rows(repo)
    assert set(rows) == {("d", "b"), ("d", "a"), ("d", "c"), ("b", "a"), ("b", "c")}
    assert all(w == pytest.approx(3 / 5) for w in rows.values())
    meta = {(p.chosen, p.rejected): p.metadata for p in repo.pairs.stream()}
    assert meta[("d", "b")] is not None and meta[("d", "b")]["rejected_rank"] == 2
    assert meta[("b", "c")] is not None and meta[("b", "c")]["chosen_rank"] == 2
    assert meta[("b", "c")]["rejected_rank"] is None  # unranked: tied below


def test_failed_stopped_and_empty_replies_cannot_be_ranked_and_nothing_is_written() -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = make_turn(repo, ["good one", "good two", "", "cut off", "broken"])
    with repo.transaction() as c:
        c.execute("UPDATE candidates SET finish_reason = 'cancelled' WHERE id = ?",
                  (turn.candidates[3].id,))
        c.execute("UPDATE candidates SET error = 'HTTP 500' WHERE id = ?",
                  (turn.candidates[4].id,))
    turn = repo.conversations.get_turn(turn.id or 0)
    cases = {
        (0, 2): "reply 3 is empty and cannot be ranked",
        (0, 3): "reply 4 is stopped before it finished and cannot be ranked",
        (4, 0): "reply 5 is failed and cannot be ranked",
        (0, 0): "ranked twice",
        (1,): "two or more replies",
    }
    for order, message in cases.items():
        with pytest.raises(StorageError, match=message):
            labeling.rank(turn, ids(turn, *order))
    with pytest.raises(StorageError, match="not a reply of this turn"):
        labeling.rank(turn, [*ids(turn, 0), 99999])
    assert repo.labels.kinds() == {} and repo.pairs.count() == 0
    assert turn.label_kind is None and not labeling.can_undo
    # the failed, stopped and empty replies left unranked make no pairs
    labeling.rank(turn, ids(turn, 1, 0))
    assert pair_rows(repo) == {("good two", "good one"): 1.0}


def test_a_ranking_replaces_the_turns_label_and_alt_z_undoes_it() -> None:
    repo = Repository.open()
    labeling = LabelingService(repo)
    turn = scored_turn(repo, ["a", "b", "c"])
    labeling.edit(turn, ids(turn, 0)[0], "my own a")
    labeling.rank(turn, ids(turn, 1, 2, 0))
    assert repo.labels.kinds() == {"ranking": 1}
    assert set(pair_rows(repo)) == {("b", "c"), ("b", "a"), ("c", "a")}
    assert [c.source for c in repo.conversations.get_turn(turn.id or 0).candidates] == ["model"] * 3
    labeling.pick(turn, ids(turn, 0)[0])  # changing one's mind replaces the ranking
    assert repo.labels.kinds() == {"pick": 1}
    assert pair_rows(repo) == {("a", "b"): 1.0, ("a", "c"): 1.0}
    labeling.rank(turn, ids(turn, 2, 1, 0))
    undone = labeling.undo()
    assert undone is not None and undone.kind == "ranking" and undone.pairs == 3
    assert repo.labels.kinds() == {} and repo.pairs.count() == 0
    assert repo.conversations.get_turn(turn.id or 0).label_kind is None


def test_rankings_export_to_every_format_with_weights_and_ranks(tmp_path: Path) -> None:
    from datasets import load_dataset

    repo = Repository.open()
    labeling = LabelingService(repo)
    pick_turn = scored_turn(repo, ["p1", "p2"])
    labeling.pick(pick_turn, ids(pick_turn, 0)[0])
    turn = scored_turn(repo, ["a", "b", "c"])
    labeling.rank(turn, ids(turn, 2, 0, 1))
    for fmt in ("jsonl", "trl", "trl-conversational"):
        out = tmp_path / f"{fmt}.jsonl"
        assert datasets.export_to_file(repo, fmt, out) == 4
        ds = load_dataset("json", data_files=str(out), split="train",
                          cache_dir=str(tmp_path / "hf-cache"))
        assert ds.num_rows == 4
        if fmt == "jsonl":
            metas = [row["metadata"] for row in ds]
            assert [m["label_kind"] for m in metas] == ["pick", "ranking", "ranking", "ranking"]
            assert [m["weight"] for m in metas] == pytest.approx([1.0] + [2 / 3] * 3)
            assert [m["chosen_rank"] for m in metas] == [None, 1, 1, 2]
        else:
            assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)


def test_session_rank_fires_hooks_and_counts_as_one_label_towards_retraining() -> None:
    replies = [[Reply("A careful, complete answer."), Reply("Maybe."), Reply("No idea.")]]

    async def scenario() -> None:
        session = AppSession(Settings(candidates_per_turn=3, retrain_every=2),
                             FakeProvider(turns=replies * 2),
                             embedder=HashEmbedder())  # type: ignore[arg-type]
        changed: list[tuple[object, ...]] = []
        trained: list[tuple[object, ...]] = []
        session.hooks.labels_did_change.append(lambda *a: changed.append(a))
        session.hooks.model_did_train.append(lambda *a: trained.append(a))
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "question")
        pick = session.labels.rank(turn, [c.id or 0 for c in turn.candidates])
        assert pick.pairs == 3 and changed
        assert session.models.overview().labels == 1
        assert session.models.overview().pairs == 3
        await session.wait_training()
        assert not trained  # one ranking is one label: retraining waits for the second
        second = await chat.send(turn.conversation_id, "again")
        session.pick(second, second.candidates[0].id or 0)
        await session.wait_training()
        assert trained
        assert session.undo_pick() is not None and session.undo_pick() is not None
        assert session.models.overview().pairs == 0
        await session.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 60))
