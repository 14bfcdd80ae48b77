"""Scripted stand-ins for the fast test tier (``make check``), like simonw/llm's MockModel.

:class:`FakeProvider` follows the provider rules of :mod:`rlhf_desktop.providers.base`
(Delta events per candidate, one Done each, cancel keeps partial text, a request-level
fault raises with every partial candidate) without HTTP or llama.cpp, so service tests run
in milliseconds. :class:`HashEmbedder` gives stable unit vectors without torch, so the real
reward-model code (features, Bradley-Terry fit, signing) runs on them.

The real providers and the real embedder keep their own tests over real servers and real
weights in the full tier (``make test``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from rlhf_desktop.domain import Candidate, Message, SamplingParams
from rlhf_desktop.providers.base import (
    CANCELLED,
    ERROR,
    BaseProvider,
    CandidateTracker,
    StreamEvent,
)
from rlhf_desktop.providers.errors import ProviderError


@dataclass
class Reply:
    """One scripted candidate: its text, how it ends, and how it streams."""

    text: str
    finish_reason: str = "stop"
    error: str | None = None
    chunk_words: int = 1
    delay_s: float = 0.0
    completion_tokens: int | None = None


@dataclass
class FakeProvider(BaseProvider):
    """Replies from a script: ``turns[k]`` is the list of replies of the k-th call.

    When the script runs out, replies are made up from the prompt (``"reply i to: ..."``),
    so a test only scripts what it checks. ``fail_with`` raises that error after the
    deltas of the call it is set for (index into calls). ``calls`` records every request.
    """

    turns: list[list[Reply]] = field(default_factory=list)
    name: str = "fake"
    model: str = "fake-model"
    fail_with: dict[int, ProviderError] = field(default_factory=dict)
    calls: list[tuple[list[Message], SamplingParams]] = field(default_factory=list)
    closed: bool = False

    def _script(self, call: int, messages: list[Message], n: int) -> list[Reply]:
        if call < len(self.turns):
            return self.turns[call][:n]
        last = messages[-1].content if messages else ""
        return [Reply(f"reply {i} to: {last[:40]}") for i in range(n)]

    async def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream the scripted replies word by word, interleaved across candidates."""
        call = len(self.calls)
        self.calls.append((list(messages), params))
        replies = self._script(call, messages, max(1, params.n))
        tracker = CandidateTracker(len(replies))
        chunks = [_chunks(r.text, r.chunk_words) for r in replies]
        step = 0
        while any(step < len(c) for c in chunks):
            for i, parts in enumerate(chunks):
                if cancel is not None and cancel.is_set():
                    for j in tracker.unfinished():
                        done = tracker.finish(j, CANCELLED)
                        if done is not None:
                            yield done
                    return
                if step < len(parts):
                    if replies[i].delay_s:
                        await asyncio.sleep(replies[i].delay_s)
                    event = tracker.add(i, parts[step])
                    if event is not None:
                        yield event
            step += 1
            await asyncio.sleep(0)
        if call in self.fail_with:
            error = self.fail_with[call]
            for j in tracker.unfinished():
                tracker.finish(j, ERROR, error=error.message)
            error.partial = tracker.snapshot()
            raise error
        for i, reply in enumerate(replies):
            done = tracker.finish(i, reply.finish_reason, error=reply.error,
                                  completion_tokens=reply.completion_tokens)
            if done is not None:
                yield done

    async def aclose(self) -> None:
        """Record that the session closed the provider."""
        self.closed = True


def _chunks(text: str, words: int) -> list[str]:
    parts = text.split(" ")
    out = [" ".join(parts[k:k + words]) for k in range(0, len(parts), words)]
    return [p if k == 0 else " " + p for k, p in enumerate(out) if p or k == 0]


class HashEmbedder:
    """Deterministic unit vectors from word hashes: similar texts share dimensions.

    Enough for the Bradley-Terry code to learn real signal on scripted data, without torch.
    """

    embedder_id = "hash-embedder-64"
    dim = 64
    loaded = True
    backend = "hash"

    def load(self) -> None:
        """Nothing to load."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
                out[row, h % self.dim] += 1.0 if h & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm:
                out[row] /= norm
        return out


def candidates_of(replies: Sequence[str]) -> list[Candidate]:
    """Finished candidates with these texts (for repository-level tests)."""
    return [Candidate(index=i, text=t, finish_reason="stop") for i, t in enumerate(replies)]
