"""End to end through the window: type, N cards stream, ranking, picks by key, retraining,
re-ranking, undo (event-loop stalls are measured by benchmarks/app_perf.py, not asserted here).

Against the Azure-protocol test server (fast) and against the built-in model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from rlhf_desktop import config
from rlhf_desktop.services.datasets.pairs import import_file
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.chat.view import EXAMPLES
from rlhf_desktop.ui.main_window import MainWindow
from tests.azure_server import AzureServer
from tests.ui.conftest import Heartbeat, SignalWaiter, run, wait_until
from tests.ui.helpers import activate, db, make_window, press, send

AZURE_KEY = "sk-azure-SECRET-ui-4f1c9e27b6d0"


async def pause() -> None:
    """A human's pause between two actions (keys arrive as separate events, not in one
    event-loop iteration)."""
    await asyncio.sleep(0.05)


def import_some(hh_data: Path, tmp_path: Path, n: int) -> int:
    """The first ``n`` real human preference pairs, imported like a user would."""
    part = tmp_path / "hh-part.jsonl"
    with hh_data.open(encoding="utf-8") as src:
        part.write_text("".join(line for _, line in zip(range(n), src, strict=False)),
                        encoding="utf-8")
    repo = Repository.open()
    try:
        return import_file(repo, part).imported
    finally:
        repo.close()


def pick_pairs(repo: Repository) -> int:
    return sum(1 for p in repo.pairs.stream() if p.source == "pick")


async def labeling_flow(window: MainWindow, n: int, hb: Heartbeat) -> dict[str, object]:
    """Three turns, two keyboard picks (retrain_every=2), re-rank, undo. Returns facts."""
    chat, backend = window.chat, window.backend
    repo = db()
    await window.start()
    await activate(window)
    await wait_until(lambda: backend.reward_is_ready, 60, "reward model ready")
    hb.start()
    await asyncio.sleep(0.1)  # the heartbeat ticks before the first action

    trained = SignalWaiter(backend.model_trained)
    w1 = await send(window, EXAMPLES[0][1])
    assert len(w1.cards) == n
    await wait_until(lambda: any(c.text for c in w1.cards.values()), 60, "first tokens")
    await wait_until(lambda: not chat.generating, 120, "turn 1")
    assert w1.turn is not None and len(w1.turn.candidates) == n
    assert all(c.candidate and c.candidate.text.strip() for c in w1.cards.values())
    assert "provider's order" in w1.status.text()  # no model yet: nothing invented

    await activate(window)
    press(window, Qt.Key.Key_2)  # pick the card shown second
    await pause()
    picked = w1.card_at(1)
    assert picked is not None and picked.candidate is not None
    assert w1.turn.chosen_candidate_id == picked.candidate.id
    assert pick_pairs(repo) == n - 1
    assert w1.reason_row.isVisible()
    QTest.keyClick(w1.reason_edit, Qt.Key.Key_Escape)  # skip the reason
    assert not w1.reason_row.isVisible()
    await pause()

    w2 = await send(window, EXAMPLES[1][1])
    # The pick is the assistant message the next turn sends as context.
    assert [m.role for m in w2.messages] == ["user", "assistant", "user"]
    assert w2.messages[1].content == picked.candidate.text
    await wait_until(lambda: not chat.generating, 120, "turn 2")
    await activate(window)
    press(window, Qt.Key.Key_2)
    await pause()
    QTest.keyClicks(w2.reason_edit, "clearer")
    QTest.keyClick(w2.reason_edit, Qt.Key.Key_Return)
    assert pick_pairs(repo) == 2 * (n - 1)
    assert {p.reason for p in repo.pairs.stream() if p.source == "pick"} == {None, "clearer"}
    # Second label with retrain_every=2: training runs in its worker thread now.
    assert backend.session.models.status().running
    await pause()

    w3 = await send(window, EXAMPLES[2][1])
    (version,) = await trained.wait(110, "the first model version")
    assert version.version == 1 and repo.versions.latest() == version
    await wait_until(lambda: not backend.session.models.status().running, 110, "training idle")
    latest = repo.versions.latest()
    assert latest is not None
    await wait_until(lambda: not chat.generating and w3.version() == latest.version, 120,
                     "turn 3 ranked by the newest model")
    hb.stop()

    cards = [c.candidate for c in w3.ordered_cards() if c.candidate]
    assert all(c.score is not None for c in cards)
    # cards ordered by score: the replies that finished first, then those cut at max tokens
    cut = [c.finish_reason == "length" for c in cards]
    assert cut == sorted(cut), cut
    for group in (False, True):
        scores = [c.score or 0.0 for c in cards if (c.finish_reason == "length") == group]
        assert scores == sorted(scores, reverse=True), scores
    top = w3.card_at(0)
    assert top is not None and top.rank_badge.text() == "#1"
    assert top.version_badge.text() == f"v{latest.version}"
    stored = repo.conversations.get_turn(w3.turn.id) if w3.turn and w3.turn.id else None
    assert stored is not None
    assert all(c.model_version == latest.version for c in stored.candidates)
    assert f"reward model v{latest.version} · " in window.retrain_label.text()  # then its accuracy
    assert "labels to next training" in window.retrain_label.text()

    # Ctrl+Z undoes the last pick and its pairs.
    await activate(window)
    press(window, Qt.Key.Key_1)
    assert pick_pairs(repo) == 3 * (n - 1)
    await pause()
    QTest.keyClick(w3.reason_edit, Qt.Key.Key_Escape)
    await pause()
    press(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert pick_pairs(repo) == 2 * (n - 1)
    assert w3.turn is not None and w3.turn.chosen_candidate_id is None
    return {"rerank": w3.rerank_count, "versions": latest.version, "gaps": hb.summary()}


@pytest.mark.timeout(120)
def test_chat_end_to_end_azure(loop: asyncio.AbstractEventLoop, qtbot: object,
                               monkeypatch: pytest.MonkeyPatch, hh_data: Path, tmp_path: Path,
                               warm_imports: None) -> None:
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", model="gpt-test-model",
                     reply_length=40, chunk_delay_s=0.004) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        # Real human pairs make training take long enough that turn 3 is shown before v1
        # lands, so the re-rank of the visible unlabeled turn is exercised for sure.
        assert import_some(hh_data, tmp_path, 80) > 50
        window = make_window(candidates_per_turn=4, retrain_every=2, max_tokens=64)
        qtbot.addWidget(window)  # type: ignore[attr-defined]
        hb = Heartbeat()
        try:
            facts = run(loop, labeling_flow(window, 4, hb))
            assert window.provider_label.text() == "Azure OpenAI · gpt-test"
            assert not window.banner.isVisible()
        finally:
            run(loop, window.shutdown())
        print(f"azure flow: {facts}")
        assert facts["rerank"] >= 1, "the visible unlabeled turn was not re-ranked"
        # Every request reached the server as Azure expects: n=4 in one request.
        bodies = [r.body for r in server.requests if r.body]
        assert bodies and all(b.get("n") == 4 for b in bodies)
        assert AZURE_KEY not in (config.data_dir() / "rlhf.sqlite3").read_bytes().decode(
            "latin-1")


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.timeout(120)
def test_chat_end_to_end_builtin_model(loop: asyncio.AbstractEventLoop, qtbot: object,
                                       warm_imports: None) -> None:
    try:
        config.default_gguf_path()
        import xllamacpp  # noqa: F401
    except (config.ConfigError, ImportError) as exc:
        pytest.skip(f"built-in model unavailable: {exc}")
    # At 24 tokens nearly every reply is cut, and training leaves pairs against a cut reply
    # out by default: the setting that takes them in.
    window = make_window(candidates_per_turn=4, retrain_every=2, max_tokens=24,
                         train_on_cut_pairs=True)
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    hb = Heartbeat()
    try:
        facts = run(loop, labeling_flow(window, 4, hb), timeout=110)
        assert window.provider_label.text().startswith("Built-in model · SmolLM2")
        assert window.banner.isVisible()  # says so, with a Settings button
    finally:
        run(loop, window.shutdown())
    print(f"built-in flow: {facts}")


@pytest.mark.timeout(120)
def test_errors_retry_and_stop_keep_partial_text(loop: asyncio.AbstractEventLoop,
                                                 qtbot: object,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", reply_length=12) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        window = make_window(candidates_per_turn=3, max_retries=0, max_tokens=64)
        qtbot.addWidget(window)  # type: ignore[attr-defined]
        chat = window.chat

        async def scenario() -> None:
            await window.start()
            await activate(window)
            # A provider fault appears inside the turn, with Retry; never a crash.
            server.inject("server_error", times=1)
            failed = await send(window, "Hello there")
            await wait_until(lambda: not chat.generating, 30, "failed turn")
            assert failed.error_row.isVisible() and failed.retry_button.isVisible()
            assert failed.error_label.text()
            assert AZURE_KEY not in failed.error_label.text()
            failed.retry_button.click()
            retried = chat.widgets[-1]
            assert retried is not failed and retried.messages == failed.messages
            await wait_until(lambda: not chat.generating, 30, "retried turn")
            assert not retried.error_row.isVisible()
            assert all(c.candidate and c.candidate.text.startswith("Reply")
                       for c in retried.cards.values())

            # Esc stops streaming and keeps the partial replies.
            server.chunk_delay_s = 0.05
            server.reply_length = 200
            slow = await send(window, "Tell me a long story")
            await wait_until(lambda: all(len(c.text) > 10 for c in slow.cards.values()), 30,
                             "some text in every card")
            press(window, Qt.Key.Key_Escape)
            await wait_until(lambda: not chat.generating, 30, "stopped turn")
            assert slow.turn is not None
            assert all(c.finish_reason == "cancelled" and c.text.startswith("Reply")
                       for c in slow.turn.candidates)
            stored = db().conversations.get_turn(slow.turn.id or 0)
            assert [c.text for c in stored.candidates] == [c.text for c in slow.turn.candidates]
            assert "Stopped" in slow.status.text()

            # Ctrl+N opens an empty chat with the example prompts; the old one is listed.
            press(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
            await wait_until(lambda: not chat.widgets, 5, "empty chat")
            assert chat.empty.isVisible() and len(chat.chips) == 5
            assert window.sidebar.list.count() == 1
            window.sidebar.list.setCurrentRow(0)
            window.sidebar._clicked(window.sidebar.list.item(0))
            # reloaded from the database: the failed turn's retry stands in for it
            assert len(chat.widgets) == 2
            assert [w.turn.id for w in chat.widgets if w.turn] == [retried.turn.id, slow.turn.id]

        try:
            run(loop, scenario())
        finally:
            run(loop, window.shutdown())


def test_alt_keys_pick_and_undo_from_the_message_box(
        loop: asyncio.AbstractEventLoop, qtbot: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's path: the message box keeps the focus after sending; what is typed
    there is text, Alt+1…9 picks and Alt+Z undoes the pick (see test_chat_turn)."""
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", reply_length=20,
                     chunk_delay_s=0.001) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        window = make_window(candidates_per_turn=3, max_tokens=32)
        qtbot.addWidget(window)  # type: ignore[attr-defined]
        chat, repo = window.chat, db()

        async def flow() -> None:
            await window.start()
            await activate(window)
            await send(window, "Name a colour.")
            await wait_until(lambda: not chat.generating, 30, "the turn")
            composer = chat.composer
            composer.setFocus()
            QTest.keyClick(composer, Qt.Key.Key_2)  # typing, never a pick
            assert composer.toPlainText() == "2" and repo.labels.count() == 0
            QTest.keyClick(composer, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)
            assert repo.labels.count() == 1 and composer.toPlainText() == "2"
            QTest.keyClick(chat.widgets[-1].reason_edit, Qt.Key.Key_Escape)
            QTest.keyClick(composer, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
            assert composer.toPlainText() == "" and repo.labels.count() == 1  # undid typing
            QTest.keyClick(composer, Qt.Key.Key_Z, Qt.KeyboardModifier.AltModifier)
            assert repo.labels.count() == 0
            assert chat.widgets[-1].turn.chosen_candidate_id is None

        try:
            run(loop, flow())
        finally:
            run(loop, window.shutdown())
