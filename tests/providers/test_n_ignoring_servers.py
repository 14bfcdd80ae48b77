"""Servers that ignore ``n`` and cut a running reply when another request arrives: every
reply is whole or says why, and carries its token counts.

llama.cpp's server behind the LiteLLM proxy: the extra single-choice requests must go one
at a time, an empty or cut reply must be requested again or fail with its reason, and
every reply must carry its token counts. The Azure-protocol server plays that stack here
(``llama_like`` + ``interrupt_finish="stop"``, as LiteLLM ends a cut stream); the real
llama.cpp server is in test_compatible_llama.py.
"""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.domain import SamplingParams
from rlhf_desktop.providers import Delta, Done, Restart, StreamEvent
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.azure_server import AzureServer, reply_tokens
from tests.providers.conftest import AZURE_KEY, azure_provider, run
from tests.providers.test_azure import HELLO

pytestmark = pytest.mark.timeout(60)


def expected(seed: int, server: AzureServer) -> str:
    """What a single-choice request with ``seed`` answers."""
    return "".join(reply_tokens(0, seed, server.reply_length))


async def turns(provider: OpenAIChatProvider, seeds: list[int],
                n: int = 4) -> tuple[list[dict[int, Done]], list[StreamEvent]]:
    results: list[dict[int, Done]] = []
    events: list[StreamEvent] = []
    try:
        for seed in seeds:
            done: dict[int, Done] = {}
            async for event in provider.stream(HELLO, SamplingParams(n=n, seed=seed)):
                events.append(event)
                if isinstance(event, Done):
                    assert event.index not in done, "one Done per candidate"
                    done[event.index] = event
            results.append(done)
    finally:
        await provider.aclose()
    return results, events


def litellm_like() -> AzureServer:
    server = AzureServer(api_key=AZURE_KEY, chunk_delay_s=0.01, reply_length=12)
    server.llama_like = True
    server.interrupt_finish = "stop"
    return server


def test_extra_requests_go_one_at_a_time_and_every_reply_is_whole() -> None:
    """The reported case: N=4 over three turns through LiteLLM in front of llama.cpp."""
    with litellm_like() as server:
        provider = azure_provider(server)
        results, events = run(turns(provider, [10, 20, 30]))
        assert server.max_active == 1  # never two requests at the server at once
    for seed, done in zip((10, 20, 30), results, strict=True):
        assert sorted(done) == [0, 1, 2, 3]
        for i in range(4):
            cand = done[i].candidate
            assert cand.error is None and cand.finish_reason == "stop"
            assert cand.text == expected(seed + i, server)  # whole, not empty or cut
    assert not [e for e in events if isinstance(e, Restart)]  # nothing had to be redone
    assert provider.n_supported is False and provider.single_request_limit == 1


def test_every_reply_has_its_token_counts() -> None:
    """The n-request answered with one choice had no counts (its usage came later)."""
    with AzureServer(api_key=AZURE_KEY) as server:
        server.ignore_n = True
        results, _ = run(turns(azure_provider(server), [5], n=3))
        non_streamed, _ = run(turns(azure_provider(server, streaming=False), [6], n=3))
    for done in results + non_streamed:
        for d in done.values():
            assert d.candidate.prompt_tokens and d.candidate.prompt_tokens > 0
            assert d.candidate.completion_tokens == server.reply_length


def test_honoured_n_gives_every_reply_its_prompt_tokens(azure_server: AzureServer) -> None:
    """One usage total for n choices: the prompt count is every reply's; the completion
    total is not split (it would be a guess)."""
    (done,), _ = run(turns(azure_provider(azure_server), [7], n=3))
    assert [done[i].candidate.prompt_tokens for i in range(3)] == [
        done[0].candidate.prompt_tokens] * 3
    assert done[0].candidate.prompt_tokens


def test_empty_reply_is_requested_again() -> None:
    with AzureServer(api_key=AZURE_KEY) as server:
        server.ignore_n = True
        server.inject("truncate", times=1, after=0, finish="stop", match_seed=42)
        (done,), events = run(turns(azure_provider(server), [40], n=3))
    assert [done[i].candidate.text for i in range(3)] == [expected(s, server)
                                                         for s in (40, 41, 42)]
    assert all(done[i].candidate.error is None for i in range(3))
    seeds = [(r.body or {}).get("seed") for r in server.requests]
    assert seeds.count(42) == 2
    assert Restart(2) not in events  # nothing had streamed, nothing to void


def test_reply_that_stays_empty_fails_with_the_reason() -> None:
    with AzureServer(api_key=AZURE_KEY) as server:
        server.ignore_n = True
        server.inject("truncate", times=10, after=0, finish="stop", match_seed=41)
        (done,), _ = run(turns(azure_provider(server), [40], n=3))
        seeds = [(r.body or {}).get("seed") for r in server.requests]
    failed = done[1].candidate
    assert failed.finish_reason == "error" and failed.text == ""
    assert failed.error and "empty 3 times" in failed.error and "Regenerate" in failed.error
    assert seeds.count(41) == 3  # the first try and two more, then it stops asking
    assert done[0].candidate.error is None and done[2].candidate.error is None


# Timing-sensitive (which stream the server cuts depends on scheduling), so it runs alone, in
# make test's serial pass. It failed 2 runs in 12 while the provider marked only the requests
# running when another was sent as overlapped, not the one sent (a redo of reply 3 sent while
# replies 1 and 2 still ran, cut to "Reply" and taken as whole); 15 of 15 passed since.
@pytest.mark.slow
@pytest.mark.serial
def test_parallel_requests_fall_back_to_one_at_a_time_when_cut() -> None:
    """Told the server handles concurrent requests, but it cuts them: detected, redone."""
    with litellm_like() as server:
        provider = OpenAIChatProvider.from_azure(
            endpoint=server.endpoint, api_key=AZURE_KEY, deployment="gpt-test",
            api_version="2024-10-21", parallel_requests=True)
        assert provider.single_request_limit is None
        results, _ = run(turns(provider, [10, 20]))
    for seed, done in zip((10, 20), results, strict=True):
        for i in range(4):
            cand = done[i].candidate
            assert cand.error is None and cand.text == expected(seed + i, server)
    assert provider.single_request_limit == 1


def test_a_reply_cut_short_while_another_request_ran_is_redone() -> None:
    """A proxy ends a cut reply with "stop" and some text: far shorter than its siblings,
    from a request that overlapped another one, so it is requested again."""
    with AzureServer(api_key=AZURE_KEY, chunk_delay_s=0.01, reply_length=12) as server:
        server.ignore_n = True
        server.inject("truncate", times=1, after=3, finish="stop", match_seed=51)
        provider = OpenAIChatProvider.from_azure(
            endpoint=server.endpoint, api_key=AZURE_KEY, deployment="gpt-test",
            api_version="2024-10-21", parallel_requests=True)
        (done,), events = run(turns(provider, [50], n=3))
    assert [done[i].candidate.text for i in range(3)] == [expected(s, server)
                                                         for s in (50, 51, 52)]
    assert Restart(1) in events
    after = events[events.index(Restart(1)):]
    assert "".join(e.text for e in after if isinstance(e, Delta) and e.index == 1) == \
        expected(51, server)
    assert provider.single_request_limit == 1


def test_cancel_while_replies_wait_their_turn() -> None:
    """Esc during the one-at-a-time requests: what arrived is kept, nothing more is sent."""
    with AzureServer(api_key=AZURE_KEY, chunk_delay_s=0.03, reply_length=60) as server:
        server.ignore_n = True
        provider = azure_provider(server)
        cancel = asyncio.Event()

        async def go() -> dict[int, Done]:
            done: dict[int, Done] = {}
            deltas = 0
            async for event in provider.stream(HELLO, SamplingParams(n=3, seed=1), cancel):
                if isinstance(event, Delta):
                    deltas += 1
                    if deltas == 3:
                        cancel.set()
                elif isinstance(event, Done):
                    done[event.index] = event
            await provider.aclose()
            return done

        done = run(go())
        sent = len(server.requests)
    assert sorted(done) == [0, 1, 2]
    assert all(d.candidate.finish_reason == "cancelled" for d in done.values())
    assert done[0].candidate.text.startswith("Reply 0 seed 1:")
    assert done[1].candidate.text == done[2].candidate.text == ""
    assert sent == 1
