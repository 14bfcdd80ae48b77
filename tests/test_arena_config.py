"""Arena configuration: source validation, how a source becomes a provider (select.py), the
``rlhf-desktop arena`` commands and ``chat --arena`` (in-process, real SQLite, real sockets).
Part of ``make check``: nothing here loads a model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlhf_desktop import config
from rlhf_desktop.cli import main
from rlhf_desktop.config import ConfigError, Settings
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.providers import ProviderConfigError
from rlhf_desktop.providers.arena import build_arena
from rlhf_desktop.providers.local import LocalProvider
from rlhf_desktop.providers.select import source_choice
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.providers.conftest import API_VERSION, AZURE_KEY, run

MODEL = "gpt-test-model"


@pytest.fixture
def gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GGUF path for the local choice (the provider is built, never loaded here)."""
    fake = tmp_path / "base.gguf"
    fake.write_bytes(b"GGUF")
    monkeypatch.setattr("rlhf_desktop.config.default_gguf_path", lambda: fake)
    return fake


def src(name: str, **kw: Any) -> dict[str, Any]:
    return CandidateSource(name, **kw).to_dict()


@pytest.mark.parametrize(("sources", "arena", "message"), [
    ([src("a"), src("a")], False, "names must differ"),
    ([src(" "), src("b")], False, "needs a name"),
    ([src("a", provider="bedrock"), src("b")], False, "'a': provider must be one of"),
    ([src("a", count=0), src("b")], False, "'a': count must be 1 to 8"),
    ([src("a", temperature=3.0), src("b")], False, "'a': temperature must be"),
    ([src("a", chat_model_version=-1), src("b")], False, "'a': chat_model_version"),
    ([src("a")], True, "needs two or more candidate sources"),
    ([src("a", count=5), src("b", count=4)], True, "more than 8 replies"),
])
def test_settings_refuse_a_bad_arena_naming_the_source(sources: list[dict[str, Any]],
                                                       arena: bool, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(candidate_sources=sources, arena=arena).validate()


def test_a_source_resolves_like_the_chat_with_its_own_overrides(
        gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(openai_model="gpt-4o-mini")
    # auto = what the chat would resolve: the built-in model without credentials ...
    assert source_choice(CandidateSource("x"), settings).kind == "local"
    # ... and Azure once its variables are set; the model names another deployment.
    for key, value in {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
                       "AZURE_OPENAI_API_KEY": AZURE_KEY,
                       "AZURE_OPENAI_DEPLOYMENT_NAME": "gpt-4o",
                       "AZURE_OPENAI_API_VERSION": API_VERSION}.items():
        monkeypatch.setenv(key, value)
    auto = source_choice(CandidateSource("x", model="gpt-4o-mini-ft"), settings)
    assert (auto.kind, auto.model) == ("azure", "gpt-4o-mini-ft")
    # An explicit kind ignores RLHF_DESKTOP_PROVIDER (that is the chat's choice).
    monkeypatch.setenv("RLHF_DESKTOP_PROVIDER", "azure")
    local = source_choice(CandidateSource("x", provider="local"), settings)
    assert (local.kind, local.endpoint, local.adapter) == ("local", str(gguf), "")
    compat = source_choice(CandidateSource("x", provider="compatible", model="llama3",
                                           base_url="http://127.0.0.1:9/v1"), settings)
    assert (compat.kind, compat.endpoint, compat.model) == \
        ("compatible", "http://127.0.0.1:9/v1", "llama3")
    with pytest.raises(ProviderConfigError, match="needs its server's base URL"):
        source_choice(CandidateSource("x", provider="compatible"), settings)
    with pytest.raises(ProviderConfigError, match="'smollm2' is not a GGUF file"):
        source_choice(CandidateSource("x", provider="local", model="smollm2"), settings)
    other = gguf.with_name("other.gguf")
    other.write_bytes(b"GGUF")
    assert source_choice(CandidateSource("x", provider="local", model=str(other)),
                         settings).endpoint == str(other)
    # A tuned version that does not exist says what to choose instead.
    with pytest.raises(ProviderConfigError, match="Chat model v3 is not in"):
        source_choice(CandidateSource("x", provider="local", chat_model_version=3), settings)


def test_local_sources_share_one_model_per_version_and_an_unknown_version_fails_alone(
        gguf: Path) -> None:
    settings = Settings(arena=True, candidate_sources=[
        src("cool", provider="local", temperature=0.2, count=1),
        src("hot", provider="local", temperature=1.2, count=1),
        src("base", provider="auto", count=1),
        src("tuned v3", provider="local", chat_model_version=3, count=1)])
    arena = build_arena(settings)
    cool, hot, auto, tuned = arena.slots
    assert isinstance(cool.provider, LocalProvider)
    assert cool.provider is hot.provider is auto.provider  # one llama.cpp model in memory
    assert {s.lane for s in (cool, hot, auto)} == {"local"}  # one after another
    assert tuned.provider is None and "Chat model v3 is not in" in tuned.error
    assert [s.offset for s in arena.slots] == [0, 1, 2, 3] and arena.n == 4
    assert arena.describe().startswith("Arena: cool (1) vs hot (1) vs base (1) vs tuned v3 (1)"
                                       " — source 'tuned v3' cannot run: Chat model v3")
    closed: list[object] = []

    async def fake_close() -> None:
        closed.append(cool.provider)

    cool.provider.aclose = fake_close  # type: ignore[method-assign]
    run(arena.aclose())
    assert len(closed) == 1  # the shared model is closed once


def test_a_source_turned_off_stays_in_the_list_but_gives_no_replies(gguf: Path) -> None:
    settings = Settings(arena=True, candidate_sources=[
        src("cool", provider="local", temperature=0.2, count=2, active=False),
        src("base", provider="local", count=1),
        src("hot", provider="local", temperature=1.2, count=1)])
    arena = build_arena(settings)
    assert [s.source.name for s in arena.slots] == ["base", "hot"] and arena.n == 2
    assert [s.name for s in settings.sources()] == ["cool", "base", "hot"]
    run(arena.aclose())
    with pytest.raises(ConfigError, match=r"two or more candidate sources in use \(1 of 3"):
        Settings(arena=True, candidate_sources=[
            src("a", count=1), src("b", count=1, active=False),
            src("c", count=1, active=False)]).validate()
    # eight replies in all counts the sources in use only
    Settings(arena=True, candidate_sources=[
        src("a", count=4), src("b", count=4), src("c", count=8, active=False)]).validate()


# ---------------------------------------------------------------------------- the CLI


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_arena_commands_add_list_remove_on_off(capsys: pytest.CaptureFixture[str],
                                               gguf: Path) -> None:
    code, out, _ = cli(capsys, "arena", "list")
    assert code == 0 and "arena off: 0 sources" in out and "add two or more" in out
    code, out, err = cli(capsys, "arena", "on")
    assert code == 2 and "needs two or more candidate sources; nothing was changed" in err
    assert not config.settings_path().exists()

    code, out, _ = cli(capsys, "arena", "add", "base", "--provider", "local", "--count", "2")
    assert code == 0 and "added base: local base, 2 replies, temperature chat's" in out
    code, out, err = cli(capsys, "arena", "add", "tuned v3", "--provider", "local",
                         "--version", "3", "--count", "2", "--temperature", "0.7")
    assert code == 0 and "local chat model v3 (tuned), 2 replies, temperature 0.7" in out
    assert "note: tuned v3 cannot run yet: Chat model v3 is not in" in err
    code, _, err = cli(capsys, "arena", "add", "base")
    assert code == 2 and "'base' exists already" in err
    code, _, err = cli(capsys, "arena", "add", "big", "--count", "9")
    assert code == 2 and "'big': count must be 1 to 8; nothing was changed" in err

    code, out, _ = cli(capsys, "arena", "on")
    assert code == 0 and out.strip() == "arena on: base (2) vs tuned v3 (2)"
    saved = config.load_settings()
    assert saved.arena and [s.name for s in saved.sources()] == ["base", "tuned v3"]
    assert saved.sources()[1] == CandidateSource("tuned v3", provider="local",
                                                 temperature=0.7, count=2,
                                                 chat_model_version=3)

    code, _, err = cli(capsys, "arena", "remove", "base")
    assert code == 2 and "turn the arena off first" in err
    code, _, err = cli(capsys, "arena", "remove", "nope")
    assert code == 2 and "no source called 'nope'; the sources are: base, tuned v3" in err
    code, out, _ = cli(capsys, "arena", "list", "--json")
    listed = json.loads(out)
    assert listed["enabled"] and [s["name"] for s in listed["sources"]] == ["base", "tuned v3"]
    assert cli(capsys, "arena", "off")[0] == 0
    code, _, err = cli(capsys, "arena", "use", "base", "nope")
    assert code != 0 and "no source called 'nope'" in err
    code, _, err = cli(capsys, "arena", "use", "base")
    assert code != 0 and "in use (1 of 2" in err and not config.load_settings().arena
    assert cli(capsys, "arena", "remove", "base")[0] == 0
    assert [s.name for s in config.load_settings().sources()] == ["tuned v3"]


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AzureServer, AzureServer]]:
    with AzureServer(api_key=AZURE_KEY, model=MODEL) as a, \
            AzureServer(api_key=AZURE_KEY, model=MODEL) as b:
        for key, value in a.environment(API_VERSION).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("OPENAI_API_KEY", AZURE_KEY)
        yield a, b


@pytest.mark.timeout(120)
def test_chat_arena_prints_each_reply_with_its_source_and_stores_a_blind_turn(
        capsys: pytest.CaptureFixture[str], servers: tuple[AzureServer, AzureServer]) -> None:
    _, b = servers
    code, _, err = cli(capsys, "chat", "hi", "--arena")
    assert code == 2 and "needs two or more candidate sources" in err
    assert cli(capsys, "arena", "add", "Azure A", "--provider", "azure", "--count", "1")[0] == 0
    assert cli(capsys, "arena", "add", "Compat B", "--provider", "compatible", "--model", MODEL,
               "--base-url", b.base_url, "--count", "2")[0] == 0
    code, _, err = cli(capsys, "chat", "hi", "--arena", "-n", "3")
    assert code == 2 and "-n does not go with --arena" in err

    code, out, err = cli(capsys, "chat", "Name a river.", "--arena", "--max-tokens", "20")
    assert code == 0, err
    assert "provider: Arena: Azure A (1) vs Compat B (2)" in err
    assert out.count("from Azure A") == 1 and out.count("from Compat B") == 2
    code, out, _ = cli(capsys, "chat", "Again.", "--arena", "--json")
    data = json.loads(out)
    assert data["provider"] == "arena"
    assert sorted(r["source"] for r in data["replies"]) == ["Azure A", "Compat B", "Compat B"]
    repo = Repository.open()
    turn = repo.conversations.get_turn(data["turn_id"])
    repo.close()
    assert turn.blind and turn.model == "Azure A vs Compat B"
    assert [(c.origin or {}).get("name") for c in turn.candidates] == \
        ["Azure A", "Compat B", "Compat B"]
