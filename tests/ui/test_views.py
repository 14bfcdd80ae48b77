"""Settings (persistence, key storage), dataset view (lazy paging, filter, delete, export),
model view, sidebar, crash reports, and the window's start without heavy imports."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from rlhf_desktop import app, config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message, ModelVersion, PreferencePair
from rlhf_desktop.services.chat.conversations import ConversationService
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.dataset.page import PAGE, DatasetView
from rlhf_desktop.ui.model.page import ModelView
from rlhf_desktop.ui.settings.dialog import SettingsDialog
from rlhf_desktop.ui.sidebar import Sidebar
from tests.helpers import record_version
from tests.ui.conftest import run
from tests.ui.helpers import db

SECRET = "sk-ui-SECRET-0a1b2c3d4e5f"
ROOT = Path(__file__).resolve().parents[2]


def test_settings_persist_and_key_goes_to_owner_only_file(loop: asyncio.AbstractEventLoop,
                                                          qtbot: object,
                                                          qsettings_dir: Path) -> None:
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    dialog.provider.setCurrentIndex(1)  # Azure OpenAI
    dialog.azure_endpoint.setText("https://example.openai.azure.com")
    dialog.azure_deployment.setText("gpt-4o")
    dialog.azure_key.setText(SECRET)
    dialog.candidates.setValue(6)
    dialog.temperature.setValue(0.3)
    dialog.max_tokens.setValue(500)
    dialog.system_prompt.setPlainText("Be brief.")
    dialog.retrain_every.setValue(3)
    dialog.gguf_path.setText("")
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted
    assert dialog.provider_changed

    saved = config.load_settings()
    assert (saved.provider, saved.azure_endpoint, saved.azure_deployment) == (
        "azure", "https://example.openai.azure.com", "gpt-4o")
    assert (saved.candidates_per_turn, saved.temperature, saved.max_tokens) == (6, 0.3, 500)
    assert (saved.system_prompt, saved.retrain_every) == ("Be brief.", 3)
    # The key: no keyring backend in tests -> the 0600 file; nowhere else.
    secrets = config.data_dir() / config.SECRETS_FILENAME
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text())["AZURE_OPENAI_API_KEY"] == SECRET
    assert config.get_secret("AZURE_OPENAI_API_KEY") == SECRET
    assert SECRET not in config.settings_path().read_text()
    QSettings().sync()
    for path in qsettings_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace")
    repo = Repository.open()
    repo.close()
    for path in config.data_dir().glob("rlhf.sqlite3*"):
        assert SECRET.encode() not in path.read_bytes()
    # Reopened, the dialog shows the saved values and never the key.
    again = SettingsDialog(config.load_settings())
    qtbot.addWidget(again)  # type: ignore[attr-defined]
    assert again.candidates.value() == 6 and again.azure_key.text() == ""
    assert "stored" in again.azure_key.placeholderText()


def test_settings_reject_nothing_saved(loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    dialog.candidates.setValue(7)
    dialog.reject()
    assert config.load_settings().candidates_per_turn == 4


def _pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(prompt=(Message("user", f"question {i}"),), chosen=f"good {i}",
                           rejected=f"bad {i}" + (" apple" if i % 10 == 0 else ""))
            for i in range(n)]


def test_dataset_view_pages_filters_deletes_exports(loop: asyncio.AbstractEventLoop,
                                                    qtbot: object, tmp_path: Path) -> None:
    backend = Backend(provider=None)
    db().pairs.add(_pairs(1200))
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    model = view.model
    assert model.total == 1200 and model.rowCount() == PAGE  # lazily loaded
    assert model.canFetchMore()
    model.fetchMore()
    assert model.rowCount() == 2 * PAGE
    assert model.data(model.index(0, 1)) == "good 1199"  # newest first
    model.reload("apple")
    assert model.total == 120 and model.rowCount() == 120 and not model.canFetchMore()
    view.table.selectRow(0)
    view.table.selectionModel().select(model.index(1, 0), view.table.selectionModel()
                                       .SelectionFlag.Select
                                       | view.table.selectionModel().SelectionFlag.Rows)
    assert view.delete_selected(confirm=False) == 2
    assert db().pairs.count() == 1198
    out = tmp_path / "export.jsonl"
    count = run(loop, view.export("trl", str(out)))
    assert count == 1198
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) >= {"prompt", "chosen", "rejected"}
    run(loop, backend.aclose())


def test_dataset_model_scrolls_100k_lazily(loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    backend = Backend(provider=None)
    repo = db()
    with repo.transaction() as c:  # 100k pairs, fast
        c.execute("INSERT INTO labels (created_at, source) VALUES (1, 'import')")
        label = c.execute("SELECT MAX(id) FROM labels").fetchone()[0]
        c.executemany(
            "INSERT INTO pairs (label_id, prompt_json, chosen, rejected, source, created_at)"
            " VALUES (?, ?, ?, ?, 'import', ?)",
            [(label, '[{"role": "user", "content": "q"}]', f"c{i}", f"r{i}", float(i))
             for i in range(100_000)])
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.resize(1000, 600)
    view.show()
    import time

    worst = 0.0
    bar = view.table.verticalScrollBar()
    for _ in range(40):  # scroll to the end repeatedly: each step fetches one page at most
        start = time.perf_counter()
        bar.setValue(bar.maximum())
        qtbot.wait(1)  # type: ignore[attr-defined]
        worst = max(worst, time.perf_counter() - start)
    assert view.model.rowCount() > 10 * PAGE
    assert worst < 0.5, f"a scroll step took {worst * 1000:.0f} ms"
    run(loop, backend.aclose())


def test_model_view_shows_versions_and_agreement(loop: asyncio.AbstractEventLoop,
                                                 qtbot: object) -> None:
    from PySide6.QtCore import Qt

    backend = Backend(provider=None)
    for v, labels, acc in ((1, 5, 0.55), (2, 10, 0.61)):
        record_version(db(), ModelVersion(
            version=v, created_at=1_700_000_000.0 + v, path="/nowhere",
            metrics={"cv_accuracy": acc, "pairs": labels * 3, "labels": labels},
            pairs=labels * 3, labels=labels))
    backend.latest = db().versions.latest()
    view = ModelView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.refresh()
    assert view.version_value.text() == "v2"
    assert view.accuracy_value.text() == "61 %"
    assert view.table.rowCount() == 2
    assert len(view.curve_chart.series()) == 3
    # the page scrolls 120 px a wheel click, not Qt's 60 (a new user found it slow)
    assert view.page_scroll.verticalScrollBar().singleStep() == 40
    # 10 labels: the figure is marked as early (it swings widely with a handful of pairs).
    assert ("model v2 · CV accuracy 61 % (early estimate, 10 labels) · trained on 30 pairs"
            in view.train_status.text())
    assert "early estimate" in view.accuracy_caption.text()
    record_version(db(), ModelVersion(
        version=3, created_at=1_700_000_003.0, path="/nowhere",
        metrics={"cv_accuracy": 0.27, "pairs": 75, "labels": 25}, pairs=75, labels=25))
    backend.latest = db().versions.latest()
    view.refresh()
    assert "model v3 · CV accuracy 27 % · trained on 75 pairs" in view.train_status.text()
    assert "early" not in view.accuracy_caption.text()
    y_axis = view.curve_chart.axes(Qt.Orientation.Vertical)[0]
    assert y_axis.min() <= 27  # a point below chance is on the chart, not clipped
    record_version(db(), ModelVersion(
        version=4, created_at=1_700_000_004.0, path="/nowhere",
        metrics={"cv_accuracy": 0.11, "pairs": 78, "labels": 26}, pairs=78, labels=26))
    backend.latest = db().versions.latest()
    view.refresh()
    y_axis = view.curve_chart.axes(Qt.Orientation.Vertical)[0]
    assert y_axis.min() == 0  # 11 % is off the bottom edge, not on it
    assert y_axis.tickCount() == 6  # 0, 20, ... 100: eleven labels did not fit, all "…"
    run(loop, backend.aclose())


def test_sidebar_new_rename_delete_search(loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    repo = Repository.open()
    a = repo.conversations.create("Gravity for kids")
    b = repo.conversations.create("Prime numbers")
    bar = Sidebar(ConversationService(repo, SessionHooks()))
    qtbot.addWidget(bar)  # type: ignore[attr-defined]
    assert bar.list.count() == 2
    bar.rename(a.id, "Gravity explained")
    titles = {c.title for c in repo.conversations.list_all()}
    assert titles == {"Gravity explained", "Prime numbers"}
    bar.search.setText("prime")
    bar.refresh()
    assert bar.list.count() == 1
    bar.search.setText("")
    bar.delete(b.id, confirm=False)
    bar.refresh()
    assert [c.id for c in repo.conversations.list_all()] == [a.id]
    bar._debounce.stop()
    repo.close()


def test_crash_report_goes_to_log_without_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    try:
        raise RuntimeError(f"boom with {SECRET}")
    except RuntimeError as exc:
        path = app.write_crash_report(type(exc), exc, exc.__traceback__)
    text = path.read_text()
    assert path.parent == config.logs_dir()
    assert "boom with ***" in text and SECRET not in text


@pytest.mark.timeout(120)
def test_window_shows_before_heavy_libraries_load(tmp_path: Path) -> None:
    code = (
        "import sys, asyncio\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from rlhf_desktop import app\n"
        "from rlhf_desktop.ui.main_window import MainWindow\n"
        "seen = {}\n"
        "orig = MainWindow.show\n"
        "def show(self):\n"
        "    seen['heavy'] = [m for m in ('torch', 'sentence_transformers', 'llama_cpp',"
        " 'xllamacpp')"
        " if m in sys.modules]\n"
        "    orig(self)\n"
        "    QTimer.singleShot(1500, self.close)\n"
        "MainWindow.show = show\n"
        "rc = app.main([])\n"
        "print('HEAVY', seen['heavy'], 'RC', rc)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "RLHF_DESKTOP_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=110)
    assert "HEAVY [] RC 0" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def test_window_follows_a_switch_of_the_system_colour_scheme(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QPalette
    from PySide6.QtWidgets import QApplication

    from rlhf_desktop.domain import Candidate, SamplingParams, Turn
    from rlhf_desktop.ui import markdown_render, theme
    from rlhf_desktop.ui.chat.cards import MarkdownView
    from tests.ui.helpers import make_window

    repo = Repository.open()
    conv = repo.conversations.create("Code")
    reply = "Use this:\n\n```python\nprint('hi')\n```\n"
    repo.conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", "Show code")], provider="test",
        model="m", params=SamplingParams(n=2),
        candidates=[Candidate(0, reply), Candidate(1, "No code here.")]))
    repo.close()
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    theme.apply(app, dark=False)
    window = make_window()
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    window.chat.show_conversation(conv.id)
    views = [v for v in window.chat.findChildren(MarkdownView) if "print" in v.toHtml()]
    assert views, "the code block was not rendered"
    light, dark = markdown_render.LIGHT.code_bg, markdown_render.DARK.code_bg
    assert light.lower() in views[0].toHtml().lower()
    before = app.palette().color(QPalette.ColorRole.Window).name()

    # What the platform emits when the user switches the system to dark.
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert app.palette().color(QPalette.ColorRole.Window).name() == theme.DARK.window
    assert app.palette().color(QPalette.ColorRole.Window).name() != before
    # disabled fields look disabled (the arena's replies box looked editable)
    disabled = app.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
    assert disabled.name() == theme.DARK.muted != theme.DARK.text
    chart = window.model_view.curve_chart
    assert chart.theme() == chart.ChartTheme.ChartThemeDark
    html = views[0].toHtml().lower()
    assert dark.lower() in html and light.lower() not in html
    assert views[0].code_blocks == ["print('hi')"]  # Copy still copies the code

    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert app.palette().color(QPalette.ColorRole.Window).name() == theme.LIGHT.window
    assert light.lower() in views[0].toHtml().lower()
    run(loop, window.shutdown())


def test_ctrl_q_quits_and_long_titles_do_not_scroll_sideways(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from tests.ui.conftest import wait_until
    from tests.ui.helpers import activate, make_window

    repo = Repository.open()
    repo.conversations.create("A very long conversation title " * 6)
    repo.close()
    window = make_window()
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    window.sidebar.refresh()
    assert (window.sidebar.list.horizontalScrollBarPolicy()
            == Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    async def quit_by_keyboard() -> None:
        await activate(window)
        QTest.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
        await wait_until(lambda: window.backend.closed, 10, "Ctrl+Q closing the window")
        await asyncio.wait_for(window.wait_closed(), 10)

    run(loop, quit_by_keyboard())
    assert not window.isVisible()


def test_dataset_detail_leads_with_the_prompt_and_both_replies(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    backend = Backend(provider=None)
    db().pairs.add([PreferencePair(
        prompt=(Message("user", "How do I boil an egg?"), Message("assistant", "Nine minutes."),
                Message("user", "Tell me a fun fact about cats")),
        chosen="Cats sleep <b>16 hours</b> a day.", rejected="Dogs.", reason="true and fun")])
    view = DatasetView(backend)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    assert "Select a pair" in view.detail.placeholderText()
    view.table.selectRow(0)
    text = view.detail.toPlainText()
    order = [text.index(s) for s in ("Tell me a fun fact about cats", "Cats sleep",
                                     "Dogs.", "true and fun", "How do I boil an egg?")]
    assert order == sorted(order), text  # the pair first, the earlier turns last
    assert "<b>16 hours</b>" in text  # reply HTML is shown as text, not rendered
    run(loop, backend.aclose())
