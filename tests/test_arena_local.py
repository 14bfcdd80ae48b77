"""The arena with the real built-in model: two local sources at different temperatures.

Real llama.cpp (xllamacpp) on the shipped SmolLM2 GGUF, a real SQLite file, the real
AppSession (hash embeddings). Full tier (``make test``): it loads llama.cpp.
"""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import CandidateSource, Turn
from rlhf_desktop.providers.arena import ArenaProvider
from rlhf_desktop.providers.local import LocalProvider
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.storage.repo import Repository
from tests.fakes import HashEmbedder


@pytest.fixture(autouse=True)
def built_in_model() -> None:
    try:
        config.default_gguf_path()
        import xllamacpp  # noqa: F401
    except (config.ConfigError, ImportError) as exc:
        pytest.skip(f"the built-in model is not installed: {exc}")


@pytest.mark.timeout(120)
def test_two_local_sources_at_two_temperatures_share_one_model_and_are_asked_again() -> None:
    sources = [CandidateSource("cool", provider="local", temperature=0.2, count=1),
               CandidateSource("hot", provider="local", temperature=1.2, count=1)]
    settings = Settings(arena=True, max_tokens=12, n_threads=1,
                        candidate_sources=[s.to_dict() for s in sources])

    async def scenario() -> tuple[Turn, Turn]:
        session = AppSession(settings, embedder=HashEmbedder())  # type: ignore[arg-type]
        await session.rebuild_provider()
        assert session.provider_reason == "Arena: cool (1) vs hot (1)"
        arena = session.provider
        assert isinstance(arena, ArenaProvider)
        cool, hot = arena.slots
        assert isinstance(cool.provider, LocalProvider) and cool.provider is hot.provider
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "Say hello.")
        first = Turn(**{**turn.__dict__, "candidates": list(turn.candidates)})
        result = await chat.regenerate(turn, [1])
        assert result.replaced == [1], result.kept
        await session.aclose()
        return first, result.turn

    first, again = asyncio.run(asyncio.wait_for(scenario(), 110))
    assert all(c.finish_reason in ("stop", "length") and c.text.strip()
               for c in first.candidates)
    repo = Repository.open()
    stored = repo.conversations.get_turn(first.id or 0)
    repo.close()
    assert stored.blind and stored.provider == "arena" and stored.model == "cool vs hot"
    origins = [c.origin or {} for c in stored.candidates]
    assert [(o["name"], o["provider"], o["temperature"]) for o in origins] == \
        [("cool", "local", 0.2), ("hot", "local", 1.2)]
    assert origins[0]["model"] == origins[1]["model"] != ""  # the GGUF file's stem
    assert (again.candidates[1].origin or {}).get("name") == "hot"
