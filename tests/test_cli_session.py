"""The command line builds its chat and its arena through ``AppSession``, as the window does:
no module in ``rlhf_desktop/cli`` makes a chat service, a labeling service or a provider of
its own (the stack the session owns), and the ``chat`` and ``arena`` commands each run in
one session that they close. In-process, real SQLite, a real Azure-protocol server."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rlhf_desktop.providers
from rlhf_desktop import config
from rlhf_desktop.cli import main
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.providers.base import BaseProvider
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.providers.conftest import API_VERSION, AZURE_KEY

CLI = Path(__file__).resolve().parent.parent / "rlhf_desktop" / "cli"

SESSION_OWNS = {"ChatService", "LabelingService", "TurnLabels", "choose_provider",
                "choose_arena", "build_arena", "provider_with_model"}
"""What AppSession builds (the chat, the labels, the provider); the command line asks it."""


def provider_classes() -> set[str]:
    """Every provider class in rlhf_desktop.providers (found, so a new one is covered)."""
    names: set[str] = set()
    for info in pkgutil.iter_modules(rlhf_desktop.providers.__path__):
        module = importlib.import_module(f"rlhf_desktop.providers.{info.name}")
        names |= {name for name, obj in vars(module).items()
                  if inspect.isclass(obj) and issubclass(obj, BaseProvider)}
    return names


def stack_built_in(folder: Path) -> list[str]:
    """``file:line name`` for each name of the session's stack a module under ``folder``
    imports or uses (including ``build`` imported from the providers package)."""
    forbidden = SESSION_OWNS | provider_classes()
    found: list[str] = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names if a.name in forbidden or (
                    a.name == "build" and (node.module or "").startswith("rlhf_desktop.prov"))]
            elif isinstance(node, ast.Name) and node.id in forbidden:
                names = [node.id]
            elif isinstance(node, ast.Attribute) and node.attr in forbidden:
                names = [node.attr]
            found += [f"{path.name}:{getattr(node, 'lineno', 0)} {name}" for name in names]
    return found


def test_the_command_line_builds_no_chat_stack_of_its_own() -> None:
    assert {"ArenaProvider", "LocalProvider", "OpenAIChatProvider"} <= provider_classes()
    assert stack_built_in(CLI) == [], "rlhf_desktop/cli must ask AppSession (cli/common.py " \
        "app_session) for its chat, arena and labels"


def test_the_check_finds_a_chat_stack_built_by_hand(tmp_path: Path) -> None:
    (tmp_path / "chat.py").write_text(
        "from rlhf_desktop.providers.select import build, choose_provider\n"
        "from rlhf_desktop.services import chat, labeling\n"
        "def run(repo, rewards):\n"
        "    provider, _ = choose_provider()\n"
        "    labels = labeling.LabelingService(repo)\n"
        "    return chat.ChatService(repo, rewards, provider)\n")
    assert stack_built_in(tmp_path) == [
        "chat.py:1 build", "chat.py:1 choose_provider", "chat.py:4 choose_provider",
        "chat.py:5 LabelingService", "chat.py:6 ChatService"]


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[AppSession]]:
    """Records every AppSession made, closed, and asked to choose a provider."""
    seen: dict[str, list[AppSession]] = {"made": [], "closed": [], "chose": []}
    init, aclose, rebuild = AppSession.__init__, AppSession.aclose, AppSession.rebuild_provider

    def made(self: AppSession, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        seen["made"].append(self)

    async def closed(self: AppSession) -> None:
        seen["closed"].append(self)
        await aclose(self)

    async def chose(self: AppSession) -> None:
        seen["chose"].append(self)
        await rebuild(self)

    monkeypatch.setattr(AppSession, "__init__", made)
    monkeypatch.setattr(AppSession, "aclose", closed)
    monkeypatch.setattr(AppSession, "rebuild_provider", chose)
    return seen


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureServer]:
    with AzureServer(api_key=AZURE_KEY, model="gpt-test-model") as srv:
        for key, value in srv.environment(API_VERSION).items():
            monkeypatch.setenv(key, value)
        yield srv


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.timeout(120)
def test_chat_runs_one_session_and_ignores_the_windows_arena_switch_without_arena(
        capsys: pytest.CaptureFixture[str], server: AzureServer,
        sessions: dict[str, list[AppSession]]) -> None:
    """The window's arena is on (two sources); ``chat`` without ``--arena`` still asks the
    one provider, as before, through one session that chose it and was closed."""
    config.save_settings(Settings(system_prompt="Answer in one line.", arena=True,
                                  candidate_sources=[
                                      CandidateSource(name, provider="azure").to_dict()
                                      for name in ("a", "b")]))
    code, out, err = cli(capsys, "chat", "Name a river.", "-n", "2", "--max-tokens", "16",
                         "--seed", "7", "--json")
    assert code == 0, err
    # stderr may also carry log lines (make exports RLHF_DESKTOP_LOG_LEVEL=INFO)
    said = [line for line in err.splitlines() if line.startswith("provider: ")]
    assert len(said) == 1, err
    assert said[0].startswith("provider: Azure OpenAI: deployment 'gpt-test' at ") and \
        said[0].endswith(" — AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY and "
                         "AZURE_OPENAI_DEPLOYMENT_NAME are set"), err
    data = json.loads(out)
    assert data["provider"] == "azure" and len(data["replies"]) == 2
    assert sessions["made"] == sessions["closed"] == sessions["chose"]
    assert len(sessions["made"]) == 1
    body = next(r.body for r in server.requests if r.body and "messages" in r.body)
    assert body["n"] == 2 and body["max_tokens"] == 16 and body["seed"] == 7
    assert body["messages"][0] == {"role": "system", "content": "Answer in one line."}
    repo = Repository.open()
    try:
        turn = repo.conversations.get_turn(data["turn_id"])
        # The session's conversations made the chat: it keeps the system prompt it began with.
        saved = repo.conversations.settings([turn.conversation_id])[turn.conversation_id]
    finally:
        repo.close()
    assert not turn.blind and saved[0] == "Answer in one line."


def test_arena_commands_change_the_sources_in_a_session_that_chooses_no_provider(
        capsys: pytest.CaptureFixture[str], sessions: dict[str, list[AppSession]]) -> None:
    for name in ("a", "b"):
        assert cli(capsys, "arena", "add", name, "--provider", "azure")[0] == 0
    code, out, _ = cli(capsys, "arena", "on")
    assert code == 0 and out.startswith("arena on: a (2) vs b (2)")
    assert config.load_settings().arena
    assert len(sessions["made"]) == 3 and sessions["closed"] == sessions["made"]
    assert sessions["chose"] == []  # changing the settings chose no provider
