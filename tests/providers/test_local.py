"""The built-in model in-process (llama-cpp-python on SmolLM2-135M-Instruct)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers import Delta, Done, ModelLoadError, ProviderError
from rlhf_desktop.providers.local import LocalProvider
from tests.providers.conftest import run

pytestmark = [pytest.mark.slow, pytest.mark.llama]
PROMPT = [Message("user", "Name a fruit.")]


@pytest.fixture(scope="module")
def local(gguf_path: Path) -> Iterator[LocalProvider]:
    """One provider (model loaded once) for the module."""
    provider = LocalProvider(gguf_path, n_threads=1, n_ctx=1024)
    yield provider
    run(provider.aclose())


async def collect(provider: LocalProvider, params: SamplingParams,
                  cancel: asyncio.Event | None = None,
                  cancel_after: int | None = None) -> tuple[list[Delta], dict[int, Done]]:
    deltas: list[Delta] = []
    done: dict[int, Done] = {}
    async for event in provider.stream(PROMPT, params, cancel):
        if isinstance(event, Delta):
            deltas.append(event)
            if cancel is not None and cancel_after is not None and len(deltas) == cancel_after:
                cancel.set()
        else:
            done[event.index] = event
    return deltas, done


def test_two_candidates_from_different_seeds(local: LocalProvider) -> None:
    params = SamplingParams(n=2, max_tokens=16, temperature=1.0, seed=11)
    deltas, done = run(collect(local, params))
    assert sorted(done) == [0, 1]
    texts = [done[i].candidate.text for i in range(2)]
    assert all(texts) and texts[0] != texts[1]
    for i in range(2):
        cand = done[i].candidate
        assert cand.text == "".join(d.text for d in deltas if d.index == i)
        assert cand.finish_reason in ("stop", "length") and cand.error is None
        assert cand.completion_tokens is not None and 0 < cand.completion_tokens <= 16
        assert cand.prompt_tokens is not None and cand.prompt_tokens > 5
        assert cand.ttft_s is not None and cand.latency_s is not None
        assert cand.ttft_s <= cand.latency_s
    # sequential: candidate 0 finished before candidate 1 started
    assert max(k for k, d in enumerate(deltas) if d.index == 0) < min(
        k for k, d in enumerate(deltas) if d.index == 1)
    # the same seed gives the same reply
    _, again = run(collect(local, SamplingParams(n=1, max_tokens=16, temperature=1.0, seed=12)))
    assert again[0].candidate.text == texts[1]


def test_cancel_keeps_partial_text(local: LocalProvider) -> None:
    cancel = asyncio.Event()
    deltas, done = run(collect(local, SamplingParams(n=3, max_tokens=64, seed=3),
                               cancel=cancel, cancel_after=3))
    assert sorted(done) == [0, 1, 2]
    assert all(d.candidate.finish_reason == "cancelled" for d in done.values())
    assert done[0].candidate.text == "".join(d.text for d in deltas if d.index == 0)
    assert done[0].candidate.text
    assert len(deltas) <= 8  # stopped within a few tokens (of 3 x 64)
    # the provider is still usable afterwards
    _, after = run(collect(local, SamplingParams(n=1, max_tokens=4, seed=1)))
    assert after[0].candidate.finish_reason in ("stop", "length")


def test_prompt_too_long_for_the_context(gguf_path: Path) -> None:
    provider = LocalProvider(gguf_path, n_ctx=64)
    long = [Message("user", "word " * 200)]

    async def go() -> None:
        try:
            await provider.generate(long, SamplingParams(n=2, max_tokens=8))
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError, match="n_ctx=64") as info:
        run(go())
    assert [c.finish_reason for c in info.value.partial] == ["error", "error"]


def test_missing_or_invalid_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model.gguf"
    bad.write_text("hello")
    for path, pattern in ((tmp_path / "missing.gguf", "does not exist"),
                          (bad, "valid GGUF")):
        provider = LocalProvider(path)

        async def go(p: LocalProvider = provider) -> None:
            try:
                await p.generate(PROMPT, SamplingParams(n=1, max_tokens=4))
            finally:
                await p.aclose()

        with pytest.raises(ModelLoadError, match=pattern):
            run(go())


def test_importing_providers_loads_neither_openai_nor_llama() -> None:
    code = ("import sys, rlhf_desktop.providers, rlhf_desktop.providers.local, "
            "rlhf_desktop.providers.openai_client; "
            "print(sorted(m for m in ('openai', 'llama_cpp', 'PySide6', 'qasync') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
