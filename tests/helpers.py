"""Small builders shared by tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlhf_desktop.domain import Candidate, Message, ModelVersion, SamplingParams, Turn
from rlhf_desktop.providers import Provider, ProviderError
from rlhf_desktop.services.chat.conversations import ConversationService
from rlhf_desktop.services.chat.service import ChatService
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.storage.repo import Repository


def make_turn(repo: Repository, texts: list[str], prompt: str = "Explain gravity") -> Turn:
    """A stored turn with one candidate per text."""
    conv = repo.conversations.create("test")
    turn = Turn(
        conversation_id=conv.id,
        messages=[Message("user", prompt)],
        provider="test",
        model="test-model",
        params=SamplingParams(n=len(texts)),
        candidates=[Candidate(index=i, text=t) for i, t in enumerate(texts)],
    )
    return repo.conversations.save_turn(turn)


def chat_service(repo: Repository, rewards: RewardService, provider: Provider, *,
                 conversations: ConversationService | None = None,
                 params: Callable[[], SamplingParams] = SamplingParams) -> ChatService:
    """A :class:`ChatService` wired as ``AppSession`` wires it (its conversations, a rank
    worker, the parameters of a turn), for tests of the service without a session. A chat's
    own model is refused (these tests give none)."""

    async def no_other_model(model: str) -> Provider:
        raise ProviderError(f"this test has no provider for {model!r}")

    return ChatService(repo, rewards, provider, ThreadPoolExecutor(1, thread_name_prefix="rank"),
                       conversations=conversations or ConversationService(repo, SessionHooks()),
                       params=params, provider_for=no_other_model)


def hh_rows(path: Path, start: int = 0, count: int | None = None) -> list[dict[str, object]]:
    """Rows of the real HH data."""
    lines = path.read_text(encoding="utf-8").splitlines()
    end = None if count is None else start + count
    return [json.loads(line) for line in lines[start:end]]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    """Write rows as JSONL."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def record_version(repo: Repository, version: ModelVersion) -> None:
    """Record a model version with a given number and time (charts, tests of the page);
    the app itself allocates numbers with ``repo.versions.add``."""
    with repo.transaction() as c:
        c.execute("INSERT INTO model_versions (version, created_at, path, metrics_json, pairs,"
                  " labels) VALUES (?, ?, ?, ?, ?, ?)",
                  (version.version, version.created_at, version.path,
                   json.dumps(version.metrics), version.pairs, version.labels))


def long_list(topic: str) -> str:
    """A long, list-shaped reply (style features: length, list items)."""
    return (f"Here is how to {topic}, step by step:\n\n- First, gather what you need for it.\n"
            f"- Then work through it slowly and check each part as you go.\n"
            f"- Finally, review the result and repeat what did not work.\n\n"
            f"With a little practice you will {topic} without thinking about it.")


def short(topic: str) -> str:
    """A one-line reply."""
    return f"Just {topic}."
