"""The turn's confidence badge never tosses a coin between identical replies: it compares
the top reply with the best *different* one, or says that the top replies are the same.

Real SQLite, the real reward model and MiniLM, a real Azure-protocol server over a socket."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from tests.azure_server import AzureServer
from tests.helpers import long_list, short
from tests.providers.conftest import AZURE_KEY, azure_provider
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import db
from tests.ui.test_model_learned import TOPICS, make_turn, pairs

PROMPT = "How do I cook pasta?"


@pytest.mark.timeout(150)
def test_confidence_compares_the_top_two_different_replies(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    rewards = RewardService()
    db().pairs.add(pairs(True, TOPICS))  # the user likes long lists
    rewards.train_now()
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", model="m") as server:
        backend = Backend(provider=azure_provider(server))
        run(loop, backend.session.load_reward_model())
        chat = backend.chat
        assert chat is not None
        model = chat.rewards.model

        def shown(texts: list[str]) -> TurnWidget:
            turn = run(loop, chat.rank(make_turn(texts, PROMPT)))
            widget = TurnWidget(PROMPT, len(texts), MarkdownRenderer())
            widget.why.backend = backend
            qtbot.addWidget(widget)  # type: ignore[attr-defined]
            widget.set_turn(turn)
            run(loop, wait_until(lambda: widget.why.explanation is not None, 60,
                                 "explanation"))
            return widget

        # Two copies of the long list (spaced and stopped differently) and a one-liner.
        long = long_list("cook pasta")
        widget = shown([long, long.rstrip(".") + "  ", short("cook pasta")])
        place = {i: widget.place(card) + 1 for i, card in widget.cards.items()}
        assert sorted(place[i] for i in (0, 1)) == [1, 2] and place[2] == 3
        copy = 2 if place[1] == 2 else 1
        p = model.prob_preferred(PROMPT, long, short("cook pasta"))
        assert p > 0.6  # the model is sure: a coin toss here would be the defect
        assert widget.confidence.text() == f"#1 beats #3: {p * 100:.0f} %"
        assert "P(#1 is better than #3)" in widget.confidence.toolTip()
        assert f"#{copy} is the same reply as #1" in widget.confidence.toolTip()

        # Every reply the same: nothing to rank, and the badge says so.
        same = shown([short("cook rice"), short("cook rice").upper(), short("cook rice")])
        assert same.confidence.text() == "top replies are the same (#1, #2, #3)"
        assert "50 %" not in same.confidence.text()
        assert "saved as a tie" in same.confidence.toolTip()
        run(loop, backend.aclose())
