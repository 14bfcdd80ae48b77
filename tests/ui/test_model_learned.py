"""The model page in the window says what the model learned (words and a plot with
uncertainty), lists the versions with their adoption verdict and switches back to any of
them; a card says why it ranked where it did, and the turn how sure the ranking is.

Real SQLite, the real reward model and MiniLM, a real Azure-protocol server over a socket."""

from __future__ import annotations

import asyncio

import pytest
from PySide6.QtCharts import QCategoryAxis, QLineSeries
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from rlhf_desktop.domain import Candidate, Message, PreferencePair, SamplingParams, Turn
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.model.page import ModelView
from tests.azure_server import AzureServer
from tests.helpers import long_list, short
from tests.providers.conftest import AZURE_KEY, azure_provider
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import db

TOPICS = ["boil an egg", "learn to swim", "save money", "grow tomatoes", "fix a flat tyre",
          "write a cover letter", "sleep better", "start running", "bake bread", "clean a pan",
          "plan a trip", "learn chess", "brew coffee", "paint a wall", "tie a tie",
          "study for exams", "keep a plant alive", "make friends", "cook rice", "stay focused"]
NEW_TOPICS = ["knit a scarf", "change a bike chain", "learn guitar", "make pancakes",
              "wash a wool jumper", "set up a budget", "train a puppy", "write a poem",
              "meditate", "repot a cactus", "iron a shirt", "learn to juggle",
              "sharpen a knife", "make soup", "read faster"]
ASKS = ("How do I {}?", "Any tips to {}?", "What is the best way to {}?")
MORE_ASKS = ("Explain how to {}.", "Teach me to {}.", "I want to {}: where do I start?",
             "Can you help me {}?", "Show me how to {}.", "Help: I need to {}.")


def pairs(long_wins: bool, topics: list[str], asks: tuple[str, ...] = ASKS
          ) -> list[PreferencePair]:
    out = []
    for t in topics:
        for ask in asks:
            a, b = (long_list(t), short(t)) if long_wins else (short(t), long_list(t))
            out.append(PreferencePair(prompt=(Message("user", ask.format(t)),), chosen=a,
                                      rejected=b))
    return out


def train_two_versions() -> None:
    """v1: the user likes one-liners; v2 after the taste flipped to long lists on new
    topics."""
    rewards = RewardService()
    db().pairs.add(pairs(False, TOPICS))
    rewards.train_now()
    db().pairs.add(pairs(True, NEW_TOPICS, MORE_ASKS))
    rewards.train_now()


@pytest.mark.timeout(120)
def test_model_page_words_plot_versions_and_rollback(loop: asyncio.AbstractEventLoop,
                                                     qtbot: object,
                                                     request: pytest.FixtureRequest) -> None:
    train_two_versions()
    backend = Backend(provider=None)
    # Closed whatever the test does: the page's tune panel measures the stored pairs in a
    # child process that only the session's close stops.
    request.addfinalizer(lambda: run(loop, backend.aclose()))
    run(loop, backend.session.load_reward_model())
    assert backend.session.models.in_use == 2
    view = ModelView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.resize(1200, 900)
    view.show()
    view.refresh()
    run(loop, wait_until(lambda: view.learned.view.width() > 0, 5, "layout"))
    # side by side, the learning curve is as wide as the labels chart (it was a sliver once
    # the learned panel joined the page)
    assert view.curve_view.width() > 0.8 * view.labels_view.width()
    assert view.version_value.text() == "v2"
    # imported pairs only: the habits section says there is nothing to measure yet
    assert view.habits_title.isVisible()
    assert "no picks with recorded card positions yet" in view.habits.text().lower()
    text = view.learned.sentences.text()
    # v2 saw one-liners win on some topics and long lists on others: no clear length taste
    assert "length: no clear effect (2× the words: " in text
    assert "you prefer shorter replies" not in text
    assert "no clear effect" in text
    prefs = view.learned.preferences
    chart = view.learned.chart
    bars = [s for s in chart.series() if isinstance(s, QLineSeries)
            and s.count() == 2 and s.at(0).y() == s.at(1).y()]
    assert len(bars) == len(prefs) == 12  # one uncertainty bar per style preference
    top = prefs[0]  # drawn at the top row, its bar spans effect ± 2 std
    top_bar = max(bars, key=lambda s: s.at(0).y())
    assert top_bar.at(0).x() == pytest.approx(top.effect - 2 * top.std)
    assert top_bar.at(1).x() == pytest.approx(top.effect + 2 * top.std)
    y_axis = chart.axes(Qt.Orientation.Vertical)[0]
    assert isinstance(y_axis, QCategoryAxis) and y_axis.count() == 12
    assert y_axis.categoriesLabels()[-1].startswith(top.noun)

    table = view.table
    assert table.rowCount() == 2
    assert [table.item(r, 0).text() for r in range(2)] == ["v2", "v1"]
    assert [table.item(r, 5).text() for r in range(2)] == ["in use", "adopted"]
    assert table.item(1, 6).text() == "first model"
    assert not view.latest_button.isVisible()

    use_v1 = table.use_button(1)
    assert use_v1 is not None and use_v1.isEnabled()
    in_use = table.use_button(2)
    assert in_use is not None  # the Use column is as wide as its buttons (it was clipped)
    assert table.columnWidth(table.columnCount() - 1) >= in_use.sizeHint().width()
    trained: list[int] = []
    backend.model_trained.connect(lambda v: trained.append(v.version))
    use_v1.click()
    waiting = table.use_button(1)
    assert view.switching and waiting is not None and not waiting.isEnabled()  # no 2nd click
    run(loop, wait_until(lambda: not view.switching, 60, "the switch"))
    assert trained == [1]  # the window re-ranks the turn waiting for a pick on this signal
    assert backend.session.models.in_use == 1 and backend.session.models.pinned == 1
    assert [table.item(r, 5).text() for r in range(2)] == ["adopted", "in use"]
    assert view.version_value.text() == "v1"
    assert "you prefer shorter replies (2× the words: −" in view.learned.sentences.text()
    assert view.latest_button.isVisible()
    assert "Now ranking with reward model v1" in view.versions_note.text()
    view.latest_button.click()
    run(loop, wait_until(lambda: backend.session.models.in_use == 2 and not view.switching,
                         30, "back to the newest"))
    assert backend.session.models.pinned is None and trained == [1, 2]


def make_turn(texts: list[str], prompt: str = "How do I cook pasta?") -> Turn:
    return Turn(conversation_id=0, messages=[Message("user", prompt)], provider="azure",
                model="m", params=SamplingParams(),
                candidates=[Candidate(index=i, text=t) for i, t in enumerate(texts)])


@pytest.mark.timeout(120)
def test_card_says_why_it_ranked_here_and_the_turn_how_sure(loop: asyncio.AbstractEventLoop,
                                                           qtbot: object) -> None:
    rewards = RewardService()
    db().pairs.add(pairs(True, TOPICS))
    rewards.train_now()
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", model="m") as server:
        backend = Backend(provider=azure_provider(server))
        run(loop, backend.session.load_reward_model())
        chat = backend.chat
        assert chat is not None
        turn = run(loop, chat.rank(make_turn(
            [short("cook pasta"), long_list("cook pasta"), "Boil water, add the pasta."])))
        widget = TurnWidget("How do I cook pasta?", 3, MarkdownRenderer())
        widget.why.backend = backend
        qtbot.addWidget(widget)  # type: ignore[attr-defined]
        widget.resize(1000, 600)
        widget.show()
        widget.set_turn(turn)  # a ranked turn waiting for its pick explains itself
        run(loop, wait_until(lambda: widget.why.explanation is not None, 60, "explanation"))
        top = widget.card_at(0)
        assert top is not None and top.candidate is not None
        assert top.candidate.text == long_list("cook pasta")
        assert not top.why_label.isVisible()
        top.why_button.click()
        assert top.why_label.isVisible()
        why = top.why_label.text()
        assert "#1 of 3" in why and "= style " in why and "+ content " in why
        assert "Against this turn's average: style <b>+" in why
        assert "length +" in why  # the style driver that lifted it, named
        assert top.score_badge.toolTip() == why
        assert widget.confidence.isVisible()
        assert "#1 beats #2: " in widget.confidence.text()
        assert "P(#1 is better than #2)" in widget.confidence.toolTip()

        # Two identical replies: a tie by design, never a 50 % coin toss.
        twin = run(loop, chat.rank(make_turn([short("cook rice"), short("cook rice")])))
        other = TurnWidget("How do I cook pasta?", 2, MarkdownRenderer())
        other.why.backend = backend
        qtbot.addWidget(other)  # type: ignore[attr-defined]
        other.set_turn(twin)
        run(loop, wait_until(lambda: other.why.explanation is not None, 60, "explanation"))
        assert other.confidence.text() == "top replies are the same (#1, #2)"
        run(loop, backend.aclose())


@pytest.mark.timeout(180)
def test_rollback_from_the_model_page_reranks_the_turn_waiting_for_a_pick(
        loop: asyncio.AbstractEventLoop, qtbot: object, monkeypatch: pytest.MonkeyPatch,
        warm_imports: None) -> None:
    """The whole window: a turn ranked by v2 waits for its pick; Use v1 on the model page
    re-ranks it with v1, and its cards explain themselves with v1."""
    from tests.ui.helpers import activate, make_window, send

    train_two_versions()
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", model="gpt-test-model",
                     reply_length=12) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        window = make_window(candidates_per_turn=3, max_tokens=32)
        qtbot.addWidget(window)  # type: ignore[attr-defined]

        async def flow() -> None:
            backend, chat = window.backend, window.chat
            await window.start()
            await activate(window)
            await wait_until(lambda: backend.reward_is_ready, 60, "reward model ready")
            widget = await send(window, "How do I bake bread?")
            await wait_until(lambda: not chat.generating and widget.version() == 2, 60,
                             "turn ranked by v2")
            await wait_until(lambda: widget.why.explanation is not None, 60, "why (v2)")
            assert widget.why.explanation is not None
            assert widget.why.explanation.version == 2 and widget.confidence.isVisible()

            window.pages.setCurrentIndex(window.pages.indexOf(window.model_view))
            page = window.model_view
            await wait_until(lambda: page.table.use_button(1) is not None, 10, "versions")
            button = page.table.use_button(1)
            assert button is not None
            button.click()
            await wait_until(lambda: widget.rerank_count == 1, 60, "re-rank after rollback")
            assert widget.version() == 1
            assert "v1" in widget.status.text()
            await wait_until(lambda: widget.why.explanation is not None
                             and widget.why.explanation.version == 1, 60, "why (v1)")
            assert page.table.item(1, 5).text() == "in use"

        try:
            run(loop, flow(), timeout=150)
        finally:
            run(loop, window.shutdown())


def test_cards_go_one_under_the_other_before_they_would_clip(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    """With the app's stylesheet a card needs about 415 px (badges, Why?, Best, and Copy /
    Regenerate); at 800 px two side by side clipped the right one's Best button."""
    from rlhf_desktop.ui import theme

    turn = make_turn(["Go to bed earlier.", "Keep a regular schedule.", "Get light early."])
    for i, cand in enumerate(turn.candidates):
        cand.id, cand.score, cand.model_version, cand.completion_tokens = i + 1, -i, 2, 95
        cand.finish_reason, cand.latency_s = "stop", 1.2
    widget = TurnWidget("How can I get better at waking up early?", 3, MarkdownRenderer())
    widget.setStyleSheet(theme.stylesheet(theme.LIGHT))
    for card in widget.cards.values():  # as the chat page's labeling row adds to each card
        card.layout().itemAt(card.layout().count() - 1).layout().addWidget(QPushButton("Edit"))
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.set_turn(turn)
    widget.show()
    for width in (700, 800, 900, 1000, 1300):
        widget.resize(width, 700)
        qtbot.wait(20)  # type: ignore[attr-defined]
        # the chat's scroll area gives the turn its width: the cards must fit in it
        assert widget.minimumSizeHint().width() <= width, (width, widget.columns)
    widget.resize(1300, 700)
    qtbot.wait(20)  # type: ignore[attr-defined]
    assert widget.columns == 2


def test_cards_in_a_narrow_chat_column_stack_instead_of_overflowing(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    """In the chat's scroll area the turn is never narrower than its layout's minimum, so
    its own width cannot tell that two cards no longer fit: the viewport's width decides."""
    from PySide6.QtWidgets import QScrollArea, QVBoxLayout, QWidget

    from rlhf_desktop.ui import theme

    turn = make_turn(["Go to bed earlier.", "Keep a regular schedule.", "Get light early."])
    for i, cand in enumerate(turn.candidates):
        cand.id, cand.score, cand.model_version, cand.completion_tokens = i + 1, -i, 2, 95
        cand.finish_reason, cand.latency_s = "stop", 1.2
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setStyleSheet(theme.stylesheet(theme.LIGHT))
    widget = TurnWidget("How can I get better at waking up early?", 3, MarkdownRenderer())
    for card in widget.cards.values():  # as the chat page's labeling row adds to each card
        card.layout().itemAt(card.layout().count() - 1).layout().addWidget(QPushButton("Edit"))
    column = QWidget()  # as in the chat page: the turns sit in a column inside the area
    QVBoxLayout(column).addWidget(widget)
    area.setWidget(column)
    qtbot.addWidget(area)  # type: ignore[attr-defined]
    area.resize(800, 700)  # a narrow window: the turn arrives in a narrow column
    area.show()
    widget.set_turn(turn)
    for width in (800, 1300, 1000, 800, 700):
        area.resize(width, 700)
        qtbot.wait(20)  # type: ignore[attr-defined]
        assert widget.width() <= area.viewport().width(), (width, widget.columns)
        assert widget.columns == (2 if width >= 1000 else 1)


@pytest.mark.timeout(120)
def test_a_ranked_turn_fits_a_narrow_window(loop: asyncio.AbstractEventLoop, qtbot: object
                                            ) -> None:
    """The real window at 800 px (the chat list hidden): the turn's cards stack, so none
    reaches past the chat's scroll area (its right card's Best button was clipped)."""
    from PySide6.QtWidgets import QApplication

    from rlhf_desktop.ui import theme
    from tests.ui.helpers import make_window

    turn = make_turn(["Go to bed earlier.", "Keep a regular schedule and get light early.",
                      "Move bedtime by 15 minutes every few days."], "How can I get up early?")
    turn.conversation_id = db().conversations.create("Waking up early").id
    for cand in turn.candidates:
        cand.finish_reason, cand.completion_tokens, cand.latency_s = "stop", 95, 1.2
    saved = db().conversations.save_turn(turn)
    db().conversations.set_scores([(c.id, -float(i), 2) for i, c in enumerate(saved.candidates)])
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    old = app.styleSheet()
    theme.apply(app, False)  # the app's stylesheet: cards need their real width
    try:
        window = make_window(candidates_per_turn=3)
        qtbot.addWidget(window)  # type: ignore[attr-defined]
        window.resize(800, 600)
        qtbot.wait(50)  # type: ignore[attr-defined]
        window.chat.show_conversation(saved.conversation_id)
        qtbot.wait(100)  # type: ignore[attr-defined]
        widget = window.chat.widgets[-1]
        viewport = window.chat.scroll_area.viewport()
        right = widget.mapTo(viewport, widget.rect().topRight()).x()
        assert right <= viewport.width(), (right, viewport.width(), widget.columns)
        run(loop, window.shutdown())
    finally:
        app.setStyleSheet(old)
