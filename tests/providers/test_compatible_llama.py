"""The OpenAI-compatible path against llama.cpp's own real server (``llama_server``).

llama.cpp's server honours ``n`` up to its slots (``LLAMA_SLOTS``) and generates the choices
side by side, streaming them interleaved by ``index``; llama-cpp-python's server, which these
tests used before, ignored ``n`` and cut a running reply when another request came (that
stack is played by the Azure-protocol server in test_n_ignoring_servers.py).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams
from rlhf_desktop.providers import Delta, Done, StreamEvent
from rlhf_desktop.providers.errors import refuses_choices
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.providers.conftest import LLAMA_SLOTS, fast_settings, run
from tests.providers.http_meter import HttpMeter

pytestmark = [pytest.mark.slow, pytest.mark.llama]
PROMPT = [Message("user", "Name a color.")]


def provider_for(base_url: str, *, streaming: bool = True) -> OpenAIChatProvider:
    return OpenAIChatProvider.from_openai(
        api_key=None, model="smollm2", base_url=base_url,
        settings=fast_settings(request_timeout_s=30.0), streaming=streaming)


def test_streaming_n_choices(llama_server: str) -> None:
    provider = provider_for(llama_server)

    async def go() -> tuple[list[Delta], list[dict[int, Done]]]:
        deltas: list[Delta] = []
        turns: list[dict[int, Done]] = []
        for seed in (5, 50):
            done: dict[int, Done] = {}
            async for event in provider.stream(
                    PROMPT, SamplingParams(n=3, max_tokens=12, temperature=1.0, seed=seed)):
                if isinstance(event, Delta):
                    deltas.append(event)
                else:
                    done[event.index] = event
            turns.append(done)
        await provider.aclose()
        return deltas, turns

    deltas, turns = run(go())
    assert provider.n_supported is True
    for done in turns:
        assert sorted(done) == [0, 1, 2]
        texts = [done[i].candidate.text for i in range(3)]
        assert all(texts) and len(set(texts)) >= 2
        for cand in (d.candidate for d in done.values()):
            assert cand.finish_reason in ("stop", "length") and cand.error is None
            assert cand.ttft_s is not None and cand.latency_s is not None
    assert {d.index for d in deltas} == {0, 1, 2}


def test_non_streaming_n_choices_and_usage(llama_server: str) -> None:
    provider = provider_for(llama_server, streaming=False)

    async def go() -> list[str]:
        cands = await provider.generate(PROMPT, SamplingParams(n=2, max_tokens=8, seed=9))
        for cand in cands:
            assert cand.prompt_tokens and cand.prompt_tokens > 5
            # one usage for a request of several choices (llama.cpp's counts one of them):
            # it is nobody's own count
            assert cand.completion_tokens is None
        (single,) = await provider.generate(PROMPT, SamplingParams(n=1, max_tokens=8, seed=9))
        await provider.aclose()
        assert single.prompt_tokens and single.prompt_tokens > 5
        assert single.completion_tokens and 0 < single.completion_tokens <= 8
        return [c.text for c in cands] + [single.text]

    texts = run(go())
    assert len(texts) == 3 and all(texts)
    assert provider.n_supported is True


def test_cancel_against_the_real_server(llama_server: str) -> None:
    provider = provider_for(llama_server)
    cancel = asyncio.Event()

    async def go() -> dict[int, Done]:
        done: dict[int, Done] = {}
        count = 0
        async for event in provider.stream(PROMPT, SamplingParams(n=1, max_tokens=200),
                                           cancel):
            if isinstance(event, Delta):
                count += 1
                if count == 2:
                    cancel.set()
            else:
                done[event.index] = event
        await provider.aclose()
        return done

    done = run(go())
    assert done[0].candidate.finish_reason == "cancelled" and done[0].candidate.text


@pytest.mark.timeout(120)
def test_n_replies_come_from_one_request(llama_server: str) -> None:
    """N replies on llama.cpp's own server: it honours ``n`` (up to its slots), so each turn is one
    request whose choices run side by side; nothing is cut, nothing is asked for twice."""
    url = urlsplit(llama_server)
    with HttpMeter(url.hostname or "127.0.0.1", url.port or 80) as meter:
        provider = provider_for(f"http://127.0.0.1:{meter.port}/v1")
        events: list[StreamEvent] = []

        async def go() -> list[list[Candidate]]:
            turns = []
            for seed in (7, 70):
                params = SamplingParams(n=4, max_tokens=12, temperature=1.0, seed=seed)
                turns.append(await provider.generate(PROMPT, params, on_event=events.append))
            await provider.aclose()
            return turns

        turns = run(go())
    for cands in turns:
        assert len(cands) == 4
        for cand in cands:
            assert cand.text.strip() and cand.error is None
            assert cand.finish_reason in ("stop", "length")
    assert {e.index for e in events if isinstance(e, Delta)} == {0, 1, 2, 3}
    assert meter.max_in_flight == 1
    # One request for the four replies on each turn. A request can also be cut off before
    # its body reaches the server: the client reused a kept-alive connection the server was
    # just closing, and sent it again on a new one (the openai client's own retry; seen on
    # loaded machines). That is not a reply asked for twice, so count the answered requests.
    sent = "; ".join(str(x) for x in meter.exchanges)
    answered = [x for x in meter.exchanges if x.answered]
    assert len(answered) == 2 and all(x.body.get("n") == 4 for x in answered), sent
    assert provider.n_supported is True and provider.single_request_limit is None


@pytest.mark.timeout(60)
def test_more_choices_than_the_server_has_slots(llama_server: str) -> None:
    """llama.cpp's server answers n above its slots with a 400 ("Field 'n': Value must be
    between 1 <= value <= 4"): the turn asks for its replies one request each instead."""
    provider = provider_for(llama_server)

    async def go() -> list[Candidate]:
        try:
            return await provider.generate(
                PROMPT, SamplingParams(n=LLAMA_SLOTS + 1, max_tokens=8, seed=11))
        finally:
            await provider.aclose()

    cands = run(go())
    assert len(cands) == LLAMA_SLOTS + 1 and all(c.text.strip() for c in cands)
    assert provider.n_supported is False  # later turns ask one reply a request at once



@pytest.mark.parametrize("message, refused", [
    ("Field 'n': Value must be between 1 <= value <= 4, but got 5", True),  # llama.cpp
    ("Unsupported parameter: 'n' is not supported with this model.", True),  # OpenAI
    ("Only n=1 is supported", True),
    ("This model's maximum context length is 2048 tokens", False),
    ("Invalid model name passed in model=gpt-4o-mini", False),
    ("Field 'messages' is required", False),
])
def test_which_refusals_are_about_the_number_of_choices(message: str, refused: bool) -> None:
    assert refuses_choices(message) is refused
    assert refuses_choices("bad request", {"param": "n"})
