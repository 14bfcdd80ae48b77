"""The Azure OpenAI path against the Azure-protocol server over real sockets, every fault."""

from __future__ import annotations

import asyncio
import time

import pytest

from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers import (
    AuthError,
    ContentFilterError,
    Delta,
    Done,
    InvalidRequestError,
    NotFoundError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    Restart,
    ServerError,
    StreamInterrupted,
)
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.azure_server import AzureServer, reply_tokens
from tests.providers.conftest import (
    API_VERSION,
    AZURE_KEY,
    azure_provider,
    fast_settings,
    free_port,
    run,
)

HELLO = [Message("user", "Say hello.")]


async def collect(provider: OpenAIChatProvider, params: SamplingParams,
                  messages: list[Message] = HELLO,
                  cancel: asyncio.Event | None = None) -> tuple[list[Delta], dict[int, Done]]:
    deltas: list[Delta] = []
    done: dict[int, Done] = {}
    try:
        async for event in provider.stream(messages, params, cancel):
            if isinstance(event, Delta):
                deltas.append(event)
            elif isinstance(event, Restart):
                deltas = [d for d in deltas if d.index != event.index]
            else:
                assert event.index not in done, "one Done per candidate"
                done[event.index] = event
    finally:
        await provider.aclose()
    return deltas, done


def expected(i: int, server: AzureServer, seed: int | None = None) -> str:
    return "".join(reply_tokens(i, seed, server.reply_length + i))


def test_streams_n_choices_by_index(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server)
    params = SamplingParams(n=3, max_tokens=50, system_prompt="Be brief.")
    deltas, done = run(collect(provider, params))
    assert sorted(done) == [0, 1, 2]
    for i in range(3):
        cand = done[i].candidate
        assert cand.text == expected(i, azure_server)
        assert cand.finish_reason == "stop" and cand.error is None
        assert cand.ttft_s is not None and cand.latency_s is not None
        assert 0 < cand.ttft_s <= cand.latency_s
        assert "".join(d.text for d in deltas if d.index == i) == cand.text
    # interleaved: candidate 1 streams before candidate 0 has finished
    first_of_1 = next(k for k, d in enumerate(deltas) if d.index == 1)
    last_of_0 = max(k for k, d in enumerate(deltas) if d.index == 0)
    assert first_of_1 < last_of_0
    (req,) = azure_server.requests
    assert req.path == "/openai/deployments/gpt-test/chat/completions"
    assert req.query["api-version"] == API_VERSION
    assert req.headers["api-key"] == AZURE_KEY
    assert req.body is not None
    assert req.body["n"] == 3 and req.body["stream"] is True and req.body["max_tokens"] == 50
    assert req.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert req.body["stream_options"] == {"include_usage": True}
    assert provider.n_supported is True


def test_single_candidate_reports_usage(azure_server: AzureServer) -> None:
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=1, max_tokens=5)))
    cand = done[0].candidate
    assert cand.finish_reason == "length" and cand.text == "".join(reply_tokens(0, None, 8)[:5])
    assert cand.prompt_tokens and cand.prompt_tokens > 0
    assert cand.completion_tokens == 5


def test_generate_returns_sorted_candidates_and_calls_back(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server)
    seen: list[object] = []

    async def go() -> list[str]:
        cands = await provider.generate(HELLO, SamplingParams(n=4), on_event=seen.append)
        await provider.aclose()
        return [c.text for c in cands]

    assert run(go()) == [expected(i, azure_server) for i in range(4)]
    assert sum(isinstance(e, Done) for e in seen) == 4


def test_non_streaming(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server, streaming=False)
    deltas, done = run(collect(provider, SamplingParams(n=2)))
    assert [done[i].candidate.text for i in range(2)] == [expected(i, azure_server)
                                                         for i in range(2)]
    assert len(deltas) == 2
    assert all(d.candidate.prompt_tokens for d in done.values())
    assert azure_server.requests[0].body is not None
    assert azure_server.requests[0].body.get("stream") is False


def test_old_api_version_without_stream_options(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server, api_version="2024-08-01-preview")
    _, done = run(collect(provider, SamplingParams(n=2)))
    assert [done[i].candidate.text for i in range(2)] == [expected(i, azure_server)
                                                         for i in range(2)]
    assert [("stream_options" in (r.body or {})) for r in azure_server.requests] == [True, False]


def test_wrong_key_names_the_variable(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server, key="sk-wrong-key-000000")
    with pytest.raises(AuthError) as info:
        run(collect(provider, SamplingParams(n=2)))
    assert "AZURE_OPENAI_API_KEY" in str(info.value)
    assert info.value.setting == "AZURE_OPENAI_API_KEY" and info.value.status_code == 401
    assert "sk-wrong-key-000000" not in str(info.value)
    assert len(azure_server.requests) == 1  # never retried


def test_forbidden_is_an_auth_error(azure_server: AzureServer) -> None:
    azure_server.inject("forbidden")
    with pytest.raises(AuthError, match="403"):
        run(collect(azure_provider(azure_server), SamplingParams(n=1)))


def test_unknown_deployment_names_it(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server, deployment="gpt-nope")
    with pytest.raises(NotFoundError) as info:
        run(collect(provider, SamplingParams(n=2)))
    assert "gpt-nope" in str(info.value) and "AZURE_OPENAI_DEPLOYMENT_NAME" in str(info.value)
    assert info.value.target == "gpt-nope"


def test_unsupported_api_version_names_the_variable(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server, api_version="2099-01-01")
    with pytest.raises(InvalidRequestError, match="AZURE_OPENAI_API_VERSION"):
        run(collect(provider, SamplingParams(n=1)))


def test_rate_limit_retries_honour_retry_after(azure_server: AzureServer) -> None:
    azure_server.inject("rate_limit", times=2, retry_after=0.2)
    started = time.perf_counter()
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert time.perf_counter() - started >= 0.4  # waited Retry-After twice
    assert len(done) == 2 and all(d.candidate.error is None for d in done.values())
    assert len(azure_server.requests) == 3


def test_rate_limit_gives_up_with_the_wait(azure_server: AzureServer) -> None:
    azure_server.inject("rate_limit", times=10, retry_after=0.05)
    with pytest.raises(RateLimitError) as info:
        run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert info.value.retry_after == pytest.approx(0.05)
    assert len(azure_server.requests) == 3  # 1 + max_retries


def test_long_retry_after_fails_at_once(azure_server: AzureServer) -> None:
    azure_server.inject("rate_limit", times=10, retry_after=60)
    with pytest.raises(RateLimitError) as info:
        run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert info.value.retry_after == 60 and "Wait 60 s" in str(info.value)
    assert len(azure_server.requests) == 1


def test_no_quota_is_not_retried(azure_server: AzureServer) -> None:
    azure_server.inject("rate_limit", times=10, retry_after=0.05, code="insufficient_quota")
    with pytest.raises(RateLimitError, match="insufficient_quota") as info:
        run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert "billing" in str(info.value)
    assert len(azure_server.requests) == 1


def test_stream_failing_before_its_first_token_is_sent_again(
        azure_server: AzureServer) -> None:
    """The client never retries a started stream; one that failed before any text is."""
    for fault in ("sse_error", "drop_mid"):
        azure_server.reset()
        azure_server.inject(fault, times=1, after=0)
        _, done = run(collect(azure_provider(azure_server), SamplingParams(n=2)))
        assert [done[i].candidate.text for i in range(2)] == [expected(i, azure_server)
                                                             for i in range(2)]
        assert len(azure_server.requests) == 2, fault


def test_server_errors_are_retried_then_reported(azure_server: AzureServer) -> None:
    azure_server.inject("server_error", times=2)
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert len(done) == 2 and len(azure_server.requests) == 3
    azure_server.reset()
    azure_server.inject("server_error", times=10)
    with pytest.raises(ServerError, match="500"):
        run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert len(azure_server.requests) == 3


def test_dropped_connection_is_retried(azure_server: AzureServer) -> None:
    azure_server.inject("drop", times=1)
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert len(done) == 2 and len(azure_server.requests) == 2
    azure_server.inject("drop", times=10)
    with pytest.raises(ProviderConnectionError, match="AZURE_OPENAI_ENDPOINT"):
        run(collect(azure_provider(azure_server), SamplingParams(n=2)))


def test_connection_refused() -> None:
    port = free_port()
    provider = OpenAIChatProvider.from_azure(
        endpoint=f"http://127.0.0.1:{port}", api_key=AZURE_KEY, deployment="gpt-test",
        api_version=API_VERSION, settings=fast_settings(max_retries=1),
    )
    with pytest.raises(ProviderConnectionError) as info:
        run(collect(provider, SamplingParams(n=2)))
    assert f"127.0.0.1:{port}" in str(info.value)


def test_read_timeout(azure_server: AzureServer) -> None:
    azure_server.inject("slow", times=1, delay=1.5)
    settings = fast_settings(request_timeout_s=0.3)
    _, done = run(collect(azure_provider(azure_server, settings=settings),
                          SamplingParams(n=2)))  # slow once, then fine
    assert len(done) == 2 and len(azure_server.requests) == 2
    azure_server.inject("slow", times=10, delay=1.5)
    provider = azure_provider(azure_server,
                              settings=fast_settings(request_timeout_s=0.3, max_retries=0))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError, match="request_timeout_s"):
        run(collect(provider, SamplingParams(n=2)))
    assert time.perf_counter() - started < 1.4


@pytest.mark.parametrize("fault", ["truncate", "drop_mid", "sse_error"])
def test_stream_ending_mid_reply_keeps_partial_text(azure_server: AzureServer,
                                                    fault: str) -> None:
    azure_server.inject(fault, after=3)
    with pytest.raises(StreamInterrupted) as info:
        run(collect(azure_provider(azure_server), SamplingParams(n=3)))
    partial = info.value.partial
    assert [c.index for c in partial] == [0, 1, 2]
    for i, cand in enumerate(partial):
        assert cand.text == "".join(reply_tokens(i, None, 99)[:3])
        assert cand.finish_reason == "error" and cand.error
    assert len(azure_server.requests) == 1  # text had arrived: not retried


def test_a_choice_left_without_its_finish_reason_is_asked_again_alone(
        azure_server: AzureServer) -> None:
    """The stream ends cleanly and finishes the other choices, but not this one (LiteLLM in
    front of llama.cpp's server with n > 1): it is asked again on its own, not failed."""
    azure_server.inject("choice_unfinished", choice=1)
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=3)))
    for i in range(3):
        assert done[i].candidate.error is None and done[i].candidate.finish_reason == "stop"
    assert done[1].candidate.text.strip()
    assert len(azure_server.requests) == 2


def test_request_level_content_filter(azure_server: AzureServer) -> None:
    azure_server.inject("content_filter")
    with pytest.raises(ContentFilterError) as info:
        run(collect(azure_provider(azure_server), SamplingParams(n=2)))
    assert "violence" in str(info.value) and "Rephrase" in str(info.value)
    assert len(azure_server.requests) == 1


def test_one_choice_filtered_others_succeed(azure_server: AzureServer) -> None:
    azure_server.inject("choice_filter", choice=1, after=2)
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=3)))
    filtered = done[1].candidate
    assert filtered.finish_reason == "content_filter"
    assert filtered.text == "".join(reply_tokens(1, None, 99)[:2])
    assert filtered.error and "violence" in filtered.error
    for i in (0, 2):
        assert done[i].candidate.finish_reason == "stop" and done[i].candidate.error is None
        assert done[i].candidate.text == expected(i, azure_server)


def test_one_choice_erroring_others_succeed(azure_server: AzureServer) -> None:
    azure_server.inject("choice_error", choice=2, after=1)
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=3)))
    assert done[2].candidate.finish_reason == "error"
    assert "failed on this choice" in (done[2].candidate.error or "")
    assert done[0].candidate.error is None and done[1].candidate.error is None


def test_fewer_choices_than_asked_fall_back_to_single_requests(
        azure_server: AzureServer) -> None:
    azure_server.ignore_n = True
    provider = azure_provider(azure_server)

    async def two_turns() -> tuple[dict[int, Done], dict[int, Done]]:
        first = await collect_open(provider, SamplingParams(n=3, seed=100))
        second = await collect_open(provider, SamplingParams(n=3, seed=200))
        await provider.aclose()
        return first, second

    first, second = run(two_turns())
    assert [first[i].candidate.text for i in range(3)] == [
        expected(0, azure_server, seed=100), expected(0, azure_server, seed=101),
        expected(0, azure_server, seed=102)]
    assert len({d.candidate.text for d in second.values()}) == 3
    bodies = [r.body or {} for r in azure_server.requests]
    assert bodies[0]["n"] == 3
    assert sorted(b.get("seed") for b in bodies[1:3]) == [101, 102]
    assert all("n" not in b for b in bodies[1:])  # later turn: straight to single requests
    assert sorted(b.get("seed") for b in bodies[3:]) == [200, 201, 202]
    assert provider.n_supported is False


async def collect_open(provider: OpenAIChatProvider, params: SamplingParams) -> dict[int, Done]:
    return {e.index: e async for e in provider.stream(HELLO, params) if isinstance(e, Done)}


def test_one_fallback_request_failing_keeps_the_others(azure_server: AzureServer) -> None:
    azure_server.ignore_n = True
    azure_server.inject("server_error", times=10, match_seed=52)
    _, done = run(collect(azure_provider(azure_server), SamplingParams(n=3, seed=50)))
    assert done[0].candidate.error is None and done[1].candidate.error is None
    failed = done[2].candidate
    assert failed.finish_reason == "error" and failed.error and "500" in failed.error


def test_cancel_keeps_partial_texts() -> None:
    with AzureServer(api_key=AZURE_KEY, chunk_delay_s=0.03, reply_length=200) as server:
        provider = azure_provider(server)
        cancel = asyncio.Event()

        async def go() -> tuple[list[Delta], dict[int, Done], float]:
            deltas: list[Delta] = []
            done: dict[int, Done] = {}
            started = time.perf_counter()
            async for event in provider.stream(HELLO, SamplingParams(n=2), cancel):
                if isinstance(event, Delta):
                    deltas.append(event)
                    if len(deltas) == 6:
                        cancel.set()
                else:
                    done[event.index] = event
            await provider.aclose()
            return deltas, done, time.perf_counter() - started

        deltas, done, took = run(go())
    assert took < 2.0
    for i in range(2):
        cand = done[i].candidate
        assert cand.finish_reason == "cancelled"
        assert cand.text and cand.text == "".join(d.text for d in deltas if d.index == i)


def test_breaking_out_early_cleans_up(azure_server: AzureServer) -> None:
    provider = azure_provider(azure_server)

    async def go() -> int:
        count = 0
        stream = provider.stream(HELLO, SamplingParams(n=2))
        async for _ in stream:
            count += 1
            if count == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        await provider.aclose()
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover
        return count

    assert run(go()) == 2


def test_openai_protocol_on_the_same_server(azure_server: AzureServer) -> None:
    provider = OpenAIChatProvider.from_openai(
        api_key=AZURE_KEY, model="gpt-test-model", base_url=azure_server.base_url,
        settings=fast_settings())
    assert provider.name == "compatible"
    _, done = run(collect(provider, SamplingParams(n=2)))
    assert [done[i].candidate.text for i in range(2)] == [expected(i, azure_server)
                                                         for i in range(2)]
    assert azure_server.requests[0].headers["authorization"] == f"Bearer {AZURE_KEY}"
    wrong_model = OpenAIChatProvider.from_openai(
        api_key=AZURE_KEY, model="gpt-9", base_url=azure_server.base_url,
        settings=fast_settings())
    with pytest.raises(NotFoundError, match="OPENAI_MODEL") as info:
        run(collect(wrong_model, SamplingParams(n=1)))
    assert "gpt-9" in str(info.value)
    wrong_key = OpenAIChatProvider.from_openai(
        api_key="sk-bad-key-123456", model="gpt-test-model", base_url=azure_server.base_url,
        settings=fast_settings())
    with pytest.raises(AuthError, match="OPENAI_API_KEY"):
        run(collect(wrong_key, SamplingParams(n=1)))


def test_server_that_interrupts_concurrent_streams(azure_server: AzureServer) -> None:
    """llama-cpp-python's server ends a stream when another request waits: resend, serialize."""
    azure_server.llama_like = True
    provider = azure_provider(azure_server)

    async def two_turns() -> list[dict[int, Done]]:
        turns = [await collect_open(provider, SamplingParams(n=4, seed=s)) for s in (10, 20)]
        await provider.aclose()
        return turns

    for seed, done in zip((10, 20), run(two_turns()), strict=True):
        assert all(d.candidate.finish_reason == "stop" for d in done.values())
        assert sorted(done) == [0, 1, 2, 3]
        assert all(d.candidate.error is None for d in done.values())
        assert [done[i].candidate.text for i in range(4)] == [
            expected(0, azure_server, seed=seed + i) for i in range(4)]
    assert provider.n_supported is False
    assert provider.single_request_limit == 1


def test_reply_cut_short_after_text_is_restarted(azure_server: AzureServer) -> None:
    """A single-choice reply that ends cleanly mid-text is sent again, with a Restart."""
    azure_server.ignore_n = True
    azure_server.inject("truncate", times=1, after=3, match_seed=31)
    events: list[object] = []

    async def go() -> list[str]:
        provider = azure_provider(azure_server)
        try:
            cands = await provider.generate(HELLO, SamplingParams(n=2, seed=30),
                                            on_event=events.append)
        finally:
            await provider.aclose()
        return [c.text for c in cands]

    assert run(go()) == [expected(0, azure_server, seed=30), expected(0, azure_server, seed=31)]
    assert Restart(1) in events
    after = events[events.index(Restart(1)):]
    assert "".join(e.text for e in after if isinstance(e, Delta) and e.index == 1) == expected(
        0, azure_server, seed=31)


def test_adapts_to_a_model_that_refuses_parameters(azure_server: AzureServer) -> None:
    """Reasoning models want max_completion_tokens and refuse temperature; old Azure API
    versions refuse stream_options: each is dropped once and the turn goes through."""
    azure_server.reasoning_model = True
    provider = azure_provider(azure_server, api_version="2024-08-01-preview")
    _, done = run(collect(provider, SamplingParams(n=2, max_tokens=4, temperature=0.5)))
    assert [done[i].candidate.finish_reason for i in range(2)] == ["length", "length"]
    last = azure_server.requests[-1].body or {}
    assert last["max_completion_tokens"] == 4 and "max_tokens" not in last
    assert "temperature" not in last and "stream_options" not in last
    assert len(azure_server.requests) == 4
