"""The model page says what its figures rest on: a version that was trained and not adopted
(once, in full, on the page), and a figure from too few picks says so instead of "0 %"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.model.page import ModelView
from tests.helpers import make_turn, record_version
from tests.ui.conftest import run
from tests.ui.helpers import db


def _version(number: int, labels: int, adoption: dict[str, object]) -> ModelVersion:
    return ModelVersion(version=number, created_at=1_700_000_000.0 + number, path="/nowhere",
                        metrics={"cv_accuracy": 0.6, "pairs": labels * 3, "labels": labels,
                                 "adoption": adoption}, pairs=labels * 3, labels=labels)


@pytest.fixture
def backend(loop: asyncio.AbstractEventLoop) -> Iterator[Backend]:
    """The session, closed after the test whatever it did (the page's tune panel measures
    stored pairs in a child process that only the session's close stops)."""
    backend = Backend(provider=None)
    yield backend
    run(loop, backend.aclose())


def test_model_page_says_a_trained_version_was_not_adopted_and_why(
        qtbot: object, backend: Backend) -> None:
    record_version(db(), _version(1, 5, {"adopted": True, "reason": "first model"}))
    record_version(db(), _version(2, 10, {"adopted": True, "reason": "ok"}))
    record_version(db(), _version(3, 20, {
        "adopted": False, "compared_pairs": 12, "current_version": 2,
        "current_accuracy": 0.667, "new_accuracy": 0.5,
        "reason": "on the 12 pairs v2 never saw: new 50.0 % (cross-validated) vs v2 66.7 %; "
                  "kept v2 in use"}))
    view = ModelView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.refresh()
    assert view.version_value.text() == "v2"
    text = view.rejected.text()
    assert view.rejected.isVisibleTo(view), "no notice of the version that was not adopted"
    assert "v3 was trained on 20 labels and not adopted" in text, text
    assert "fell from 67 % (v2) to 50 %" in text and "v2 still ranks" in text, text
    assert view.rejected.wordWrap()  # the whole sentence, never cut
    record_version(db(), _version(4, 25, {"adopted": True, "reason": "ok"}))
    view.refresh()
    assert not view.rejected.isVisibleTo(view)  # a newer adopted version: nothing to explain


def test_agreement_from_one_pick_says_too_few_instead_of_a_percentage(
        qtbot: object, backend: Backend) -> None:
    repo = db()
    turn = make_turn(repo, ["first reply", "second reply"])
    a, b = turn.candidates
    repo.conversations.set_scores([(a.id, 1.0, 1), (b.id, 0.0, 1)])
    repo.labels.pick(turn.id, b.id, model_top_candidate_id=a.id)  # the model disagreed once
    view = ModelView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.refresh()
    assert "%" not in view.agree_value.text(), view.agree_value.text()
    assert "too few" in view.agree_value.text()
    assert "0 of 1 time" in view.agree_caption.text()
    assert "needs 5 ranked picks" in view.agree_caption.text()


def test_agreement_from_few_blind_picks_says_they_were_blind(
        qtbot: object, backend: Backend) -> None:
    """Once there are blind picks the card counts only those, and says so: "0 of 1 time"
    beside the habits' "33 % when its ranking was shown (3)" read as a contradiction."""
    from rlhf_desktop.domain import Shown

    repo = db()
    for blind in (False, False, True):
        turn = make_turn(repo, ["first reply", "second reply"])
        a, b = turn.candidates
        repo.conversations.set_scores([(a.id, 1.0, 1), (b.id, 0.0, 1)])
        repo.labels.pick(turn.id, b.id, model_top_candidate_id=a.id,
                         shown=Shown(blind=blind))
    view = ModelView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.refresh()
    assert "0 of 1 time on blind turns so far" in view.agree_caption.text(), \
        view.agree_caption.text()
