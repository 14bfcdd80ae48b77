"""The model page's leaderboard of candidate sources, its bias report and the rankers it
compares: real SQLite, arena turns labeled by a scripted user whose picks follow
known strengths, the page read back as a user (and a screen reader) sees it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import numpy as np
import pytest
from PySide6.QtWidgets import QLabel

from rlhf_desktop.core.leaderboard import compute
from rlhf_desktop.domain import (
    Candidate,
    CandidateSource,
    Message,
    SamplingParams,
    Shown,
    Turn,
)
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.model.page import ModelView
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import db

SOURCES = {
    "base": (CandidateSource("base", provider="local", chat_model_version=0), 1000.0),
    "tuned v1": (CandidateSource("tuned v1", provider="local", chat_model_version=1), 1080.0),
    "gpt-4o-mini": (CandidateSource("gpt-4o-mini", provider="azure", model="gpt-4o-mini"),
                    1250.0),
}


def label_arena_turns(repo: Repository, n: int, seed: int = 0) -> None:
    """``n`` arena turns of two sources × two replies, shown in a random order; the scripted
    user picks a reply of source A over B with the Bradley-Terry probability of their
    strengths, and the first card a little more often than the others when in doubt."""
    rng = np.random.default_rng(seed)
    names = list(SOURCES)
    conv = repo.conversations.create("arena")
    for k in range(n):
        a, b = (names[i] for i in rng.choice(len(names), 2, replace=False))
        cands = [Candidate(index=i, text=f"{name} reply {i} to question {k}" + " more" * i,
                           finish_reason="stop", origin=SOURCES[name][0].origin(0.7))
                 for i, name in enumerate((a, a, b, b))]
        turn = repo.conversations.save_turn(Turn(
            conversation_id=conv.id, messages=[Message("user", f"question {k}")],
            provider="arena", model=f"{a} vs {b}", params=SamplingParams(n=4),
            candidates=cands, blind=True))
        order = [int(i) for i in rng.permutation(4)]
        positions = {int(turn.candidates[i].id or 0): where for where, i in enumerate(order)}
        p_a = 1 / (1 + 10 ** ((SOURCES[b][1] - SOURCES[a][1]) / 400))
        winner = a if rng.random() < p_a else b
        mine = [c for c in turn.candidates if c.origin and c.origin["name"] == winner]
        first = next(c for c in mine if positions[int(c.id or 0)] == min(
            positions[int(m.id or 0)] for m in mine))
        chosen = first if rng.random() < 0.7 else mine[int(rng.integers(2))]
        repo.labels.pick(int(turn.id or 0), int(chosen.id or 0),
                         shown=Shown(blind=True, time_to_pick_s=float(rng.uniform(3, 20)),
                                     positions=positions))


@pytest.fixture
def backend(loop: asyncio.AbstractEventLoop) -> Iterator[Backend]:
    """The session, closed after the test whatever it did: the model page's tune panel
    starts measuring the stored pairs in a child process (``python -m
    rlhf_desktop.tune.data``) that only the session's close stops."""
    backend = Backend(provider=None)
    yield backend
    run(loop, backend.aclose())


@pytest.mark.timeout(120)
def test_leaderboard_and_bias_report_on_the_model_page(loop: asyncio.AbstractEventLoop,
                                                       qtbot: object, backend: Backend) -> None:
    view = ModelView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.resize(1200, 900)
    view.show()
    board = view.leaderboard
    run(loop, wait_until(lambda: board.board is not None, 30, "the empty leaderboard"))
    assert "No labeled arena turns yet" in board.text()
    assert not board.table.isVisibleTo(view)
    assert view.habits_panel.chart.accessibleDescription() == (
        "Picks by card position: no picks with recorded card positions yet.")

    label_arena_turns(db(), 4)
    shown = board.board
    backend.labels_changed.emit()  # as after a pick: the visible page refreshes
    run(loop, wait_until(lambda: board.board is not shown, 30, "the leaderboard"))
    assert board.board is not None and not board.board.ready
    assert "Too few battles" in board.text()
    cell = board.table.item(0, 1)
    assert board.table.rowCount() == 3 and cell is not None and cell.text() == "–"

    label_arena_turns(db(), 150, seed=1)
    shown = board.board
    view.refresh()
    run(loop, wait_until(lambda: board.board is not shown, 60, "the leaderboard"))
    result = board.board
    assert result is not None and result.ready
    expected = compute(db().arena.turns())  # the same numbers as the service, same seed
    rows = [[board.table.item(r, c).text() for c in range(4)]  # type: ignore[union-attr]
            for r in range(board.table.rowCount())]
    assert [r[0] for r in rows] == [s.name for s in expected.standings]
    assert rows[0][0] == "gpt-4o-mini"  # the strongest source leads
    for row, s in zip(rows, expected.standings, strict=True):
        assert s.strength is not None and s.low is not None and s.high is not None
        assert row[1] == f"{s.strength:.0f}  ({s.low:.0f}–{s.high:.0f})"
        assert re.fullmatch(r"\d+%", row[2]) and row[3].startswith(f"{s.battles}  (")
    assert board.note.text().startswith(expected.verdict + ". Bradley-Terry strengths on the "
                                        "Elo scale")
    assert board.tuned.isVisibleTo(view)
    (h2h,) = expected.head_to_head
    assert h2h.rate is not None
    assert board.tuned.text().startswith(
        f"• Chat model v1 (tuned) beat the base model in {h2h.rate:.0%} "
        f"of {h2h.battles} battles (95% CI")
    assert board.accessibleDescription() == board.text()

    # the bias report: bars per position with chance, in words for screen readers too
    report = view.habits_panel.chart.report
    assert report.picks == 154 and [s.turns for s in report.shares] == [154] * 4
    assert report.shares[0].share > 0.25 and report.shares[0].chance == 0.25
    description = view.habits_panel.chart.accessibleDescription()
    assert f"first card: {report.shares[0].share:.0%} of 154 picks (chance 25%, p" in description
    assert view.habits.text().startswith(f"• You picked the first card "
                                         f"{report.shares[0].share:.0%} of the time")
    assert "exact two-sided binomial test" in view.habits_panel.note.text()

    # the spot for the lead's panels: after the leaderboard, before the versions
    extra = QLabel("tuning panel")
    view.add_panel(extra)
    content = view.page_scroll.widget()
    assert content is not None
    page = content.layout()
    assert page is not None
    assert page.indexOf(view.leaderboard) < page.indexOf(view.panels) < page.indexOf(view.table)
    assert view.panels.indexOf(extra) == view.panels.count() - 1  # after the tuning panel
