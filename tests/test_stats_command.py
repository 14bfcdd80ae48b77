"""``rlhf-desktop stats``: the reward model in use (not merely the newest) and the pairs by
label kind, as the dataset card counts them (run as a user would: a subprocess)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.storage.repo import Repository
from tests.helpers import make_turn, record_version
from tests.test_cli import cli


def _fill(repo: Repository) -> None:
    pick = make_turn(repo, ["a", "b", "c"], prompt="pick one")
    repo.labels.pick(pick.id, pick.candidates[0].id)  # 2 pairs
    ranked = make_turn(repo, ["x", "y", "z"], prompt="rank them")
    repo.labels.rank(ranked.id, [c.id for c in ranked.candidates])  # 3 pairs
    now = time.time()
    for number, adopted in ((1, True), (2, True), (3, False)):
        adoption = {"adopted": adopted, "reason": "on the 12 pairs v2 never saw: new 50.0 % "
                    "(cross-validated) vs v2 66.7 %; kept v2 in use" if not adopted else "ok"}
        record_version(repo, ModelVersion(number, now + number, f"/nowhere/v{number}",
                                          {"cv_accuracy": 0.6 + number / 100,
                                           "adoption": adoption}, 5, 2))


def test_stats_names_the_version_in_use_and_pairs_by_label_kind(data_home: Path) -> None:
    repo = Repository.open()
    try:
        _fill(repo)
    finally:
        repo.close()
    lines = cli("stats").stdout.splitlines()
    model = next(line for line in lines if line.startswith("model"))
    assert "v2 in use" in model and "v3" in model and "not adopted" in model, model
    assert not model.split()[1].startswith("v3"), model
    assert "pairs         5 (pick 2, ranking 3)" in lines, lines
    data = json.loads(cli("stats", "--json").stdout)
    assert data["model_version"] == 2 and data["newest_model_version"] == 3
    assert data["pairs_by_source"] == {"pick": 2, "ranking": 3}


def test_stats_labels_line_names_ties_and_all_bad_flags(data_home: Path) -> None:
    """5 picks, a tie and an "all bad": the labels line says the tie and the "all bad" are
    there and make no pairs (not just "labels 5")."""
    repo = Repository.open()
    try:
        _fill(repo)
        tied = make_turn(repo, ["same", "same"], prompt="tie them")
        repo.labels.tie(tied.id, [c.id for c in tied.candidates])
        bad = make_turn(repo, ["no", "nope"], prompt="all bad")
        repo.labels.all_bad(bad.id)
    finally:
        repo.close()
    lines = cli("stats").stdout.splitlines()
    assert "labels        2 (+ 1 tie, 1 all bad: no pairs)" in lines, lines
    assert json.loads(cli("stats", "--json").stdout)["labels"] == 2
