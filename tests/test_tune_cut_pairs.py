"""Tuning and the pairs whose rejected reply was cut at max tokens (``rejected_cut``): they
are included by default, the plan says so and why, and the option leaves them out of the
plan's count and of the run's pairs (the scripted tuning child: a real process and files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlhf_desktop.config import Settings
from rlhf_desktop.core.pick_rules import CUT
from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.services.tuning.service import TuningService
from rlhf_desktop.storage.repo import Repository
from tests.conftest import REPO_ROOT
from tests.test_tuning_service import FAST, SCRIPTED, until_state

# The tuning service's plan runs the fit check as a child process (tokenizer and all).
pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@pytest.fixture
def service(data_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TuningService]:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.05")
    svc = TuningService(data_home, Settings, overrides=FAST, module=SCRIPTED)
    yield svc
    svc.close()


def _turn_with_a_cut_reply() -> None:
    """A pick of a whole reply over another whole one and over one cut at max tokens."""
    repo = Repository.open()
    try:
        conv = repo.conversations.create("t")
        turn = repo.conversations.save_turn(Turn(
            conversation_id=conv.id, messages=[Message("user", "Name three rivers.")],
            provider="test", model="m", params=SamplingParams(n=3),
            candidates=[Candidate(index=0, text="The Nile, the Amazon and the Danube."),
                        Candidate(index=1, text="Rivers."),
                        Candidate(index=2, text="Well, there are many rivers in the wor",
                                  finish_reason=CUT)]))
        repo.labels.pick(turn.id, turn.candidates[0].id)
        assert len(repo.pairs.cut_ids()) == 1
    finally:
        repo.close()


def test_cut_pairs_are_included_by_default_and_can_be_left_out(service: TuningService
                                                               ) -> None:
    _turn_with_a_cut_reply()
    plan = service.plan()
    assert plan.pairs == 2 and plan.cut_pairs == 1
    assert ("1 pair against a reply cut at max tokens included (you preferred a whole reply "
            "over one that stops mid-sentence") in plan.text(), plan.text()
    service.use_cut_pairs = False
    plan = service.plan()
    assert plan.pairs == 1 and "1 pair against a reply cut at max tokens left out" in plan.text()
    service.start()
    snap = until_state(service, "done", "failed")
    assert snap.state == "done", snap.message
    assert snap.pairs_total == 1
    rows = [json.loads(line) for line in
            (Path(snap.run_dir) / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["rejected"][0]["content"] for r in rows] == ["Rivers."]
