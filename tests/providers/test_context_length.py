"""A message too long for the model's context is said plainly, whoever says so.

Each server's own error body for a conversation of about 9,300 tokens sent to a model of
2,048 (OpenAI, Azure OpenAI, LiteLLM, llama-cpp-python's server, llama.cpp's server, vLLM,
LM Studio) is served over a real loopback socket and read by the real ``openai`` client:
the turn fails with :class:`ContextLengthError` and a message that gives both sizes, never
a blame on concurrency or a bare "refused the request".
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers.errors import (
    ContextLengthError,
    InvalidRequestError,
    context_length_message,
    context_overflow,
)
from rlhf_desktop.providers.openai_client import OpenAIChatProvider

OPENAI_MESSAGE = ("This model's maximum context length is 2048 tokens. However, your messages "
                  "resulted in 9329 tokens. Please reduce the length of the messages.")
LLAMA_CPP_PYTHON = ("This model's maximum context length is 2048 tokens. However, you requested "
                    "9585 tokens (9329 in the messages, 256 in the completion). Please reduce "
                    "the length of the messages or completion.")
BODIES: dict[str, tuple[int, dict[str, Any]]] = {
    "openai": (400, {"error": {"message": OPENAI_MESSAGE, "type": "invalid_request_error",
                               "param": "messages", "code": "context_length_exceeded"}}),
    "azure": (400, {"error": {"message": OPENAI_MESSAGE, "type": "invalid_request_error",
                              "param": "messages", "code": "context_length_exceeded"}}),
    "llama-cpp-python": (400, {"error": {"message": LLAMA_CPP_PYTHON,
                                         "type": "invalid_request_error", "param": "messages",
                                         "code": "context_length_exceeded"}}),
    "litellm": (400, {"error": {
        "message": ("litellm.ContextWindowExceededError: litellm.BadRequestError: "
                    "ContextWindowExceededError: OpenAIException - " + LLAMA_CPP_PYTHON
                    + ". Received Model Group=gpt-4o-mini\nAvailable Model Group "
                    "Fallbacks=None"),
        "type": None, "param": None, "code": "400"}}),
    "litellm-raw": (500, {"error": {
        "message": ("litellm.APIError: APIError: OpenAIException - Requested tokens (9329) "
                    "exceed context window of 2048"),
        "type": None, "param": None, "code": "500"}}),
    "llama.cpp": (400, {"error": {
        "code": 400, "message": "request (9329 tokens) exceeds the available context size "
                                "(2048 tokens), try increasing it",
        "type": "exceed_context_size_error", "n_prompt_tokens": 9329, "n_ctx": 2048}}),
    "vllm": (400, {"object": "error", "message": (
        "This model's maximum context length is 2048 tokens. However, you requested 9585 "
        "tokens (9329 in the messages, 256 in the completion). Please reduce the length of "
        "the messages or completion."), "type": "BadRequestError", "param": None,
        "code": 400}),
    "lm-studio": (400, {"error": (
        "Trying to keep the first 9329 tokens when context the overflows. However, the model "
        "is loaded with context length of only 2048 tokens, which is not enough. Try to load "
        "the model with a larger context length, or provide a shorter input")}),
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        status, body = BODIES[self.server.which]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    which = "openai"
    requests = 0


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _provider(server: _Server, which: str) -> OpenAIChatProvider:
    server.which = which
    settings = Settings(max_retries=0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    if which == "azure":
        return OpenAIChatProvider.from_azure(endpoint=url, api_key="sk-context-test-key",
                                             deployment="gpt-test", api_version="2024-10-21",
                                             settings=settings)
    return OpenAIChatProvider.from_openai(api_key="sk-context-test-key", model="m",
                                          base_url=f"{url}/v1", settings=settings)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", sorted(BODIES))
def test_each_servers_context_error_says_both_sizes(server: _Server, which: str) -> None:
    provider = _provider(server, which)
    long_text = "word " * 30_000

    async def turn() -> BaseException:
        try:
            await provider.generate([Message("user", long_text)], SamplingParams(n=2))
        except Exception as exc:
            return exc
        finally:
            await provider.aclose()
        raise AssertionError("the turn did not fail")

    error = asyncio.run(turn())
    assert isinstance(error, ContextLengthError), repr(error)
    assert (error.tokens, error.limit) == (9329, 2048)
    assert str(error) == ("Your message and the conversation are about 9,300 tokens; this "
                          "model takes 2,048. Shorten the message or start a new chat.")
    assert "one request at a time" not in str(error)
    assert server.requests == 1, "a context error is not worth asking again"
    # the failed replies say the same on their cards
    assert all(c.error == str(error) for c in error.partial)


def test_other_refusals_are_not_context_errors() -> None:
    assert context_overflow("Unrecognized request argument supplied: stream_options",
                            {"code": None}) is None
    assert context_overflow("Invalid model name passed in model=gpt-x",
                            {"type": "invalid_request_error", "code": "400"}) is None
    assert context_overflow("The server had an error while processing your request.") is None


def test_prompt_that_fits_but_not_with_the_reply_names_the_reply_length() -> None:
    found = context_overflow(
        "This model's maximum context length is 2048 tokens. However, you requested 2156 "
        "tokens (1900 in the messages, 256 in the completion).", {})
    assert found == (1900, 2048)
    message = context_length_message(*found)
    assert "1,900 tokens" in message and "2,048" in message and "Max tokens" in message


def test_unknown_sizes_still_say_what_happened() -> None:
    found = context_overflow("Error: context_length_exceeded", {"code": "context_length_exceeded"})
    assert found == (None, None)
    message = context_length_message(*found)
    assert message.startswith("Your message and the conversation are too long")
    assert issubclass(ContextLengthError, InvalidRequestError)


# What LiteLLM in front of llama-cpp-python's server sent for a conversation over the model's
# context (recorded from /work/shared/tools/azure-litellm.sh: litellm 1.108.7,
# llama-cpp-python 0.3.36): streamed, an empty reply that ends "stop"; not streamed, a 400.
EMPTY_STREAM = (
    'data: {"id":"chatcmpl-8cb4","object":"chat.completion.chunk","created":1796551742,'
    '"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    'data: {"id":"chatcmpl-8cb4","object":"chat.completion.chunk","created":1796551742,'
    '"model":"gpt-4o-mini","choices":[{"index":0,"delta":{}}]}\n\n'
    "data: [DONE]\n\n")
LITELLM_UNSTREAMED = {"error": {
    "message": ("litellm.ContextWindowExceededError: litellm.BadRequestError: "
                "ContextWindowExceededError: OpenAIException - This model's maximum context "
                "length is 2048 tokens. However, you requested 9345 tokens (9329 in the "
                "messages, 16 in the completion). Please reduce the length of the messages or "
                "completion.\nmodel=gpt-4o-mini. context_window_fallbacks=None. "
                "fallbacks=None.\n\nSet 'context_window_fallback' - https://docs.litellm.ai/"
                "docs/routing#fallbacks\n\nLiteLLM: model group 'gpt-4o-mini' failed with the "
                "error above. No fallback was attempted."),
    "type": "invalid_request_error", "param": None, "code": "400"}}


class _HidingHandler(BaseHTTPRequestHandler):
    server: _HidingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.streamed.append(bool(body.get("stream")))
        if body.get("stream"):
            data = EMPTY_STREAM.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
        else:
            data = json.dumps(LITELLM_UNSTREAMED).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _HidingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HidingHandler)
        self.streamed: list[bool] = []


@pytest.mark.timeout(60)
def test_a_stream_that_hides_the_context_error_is_asked_unstreamed_and_says_it() -> None:
    httpd = _HidingServer()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        provider = OpenAIChatProvider.from_azure(
            endpoint=f"http://127.0.0.1:{httpd.server_address[1]}", api_key="sk-test-123",
            deployment="gpt-4o-mini", api_version="2024-08-01-preview",
            settings=Settings(max_retries=0))

        async def turns() -> list[BaseException]:
            errors = []
            for _ in range(2):  # the second turn knows the server ignores n
                try:
                    await provider.generate([Message("user", "word " * 9000)],
                                            SamplingParams(n=4, max_tokens=16))
                except Exception as exc:
                    errors.append(exc)
            await provider.aclose()
            return errors

        errors = asyncio.run(turns())
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert len(errors) == 2
    for error in errors:
        assert isinstance(error, ContextLengthError), repr(error)
        assert str(error).startswith("Your message and the conversation are about 9,300 "
                                     "tokens; this model takes 2,048.")
        assert "one request at a time" not in str(error)
        assert len(error.partial) == 4 and all(c.error == str(error) for c in error.partial)
    # each turn: one streamed request (for all four, then for the first alone), then that
    # empty reply unstreamed, which said why; the others were never asked for
    assert httpd.streamed == [True, False, True, False]


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.timeout(240)
def test_a_message_over_the_context_through_litellm_and_llama_cpp(litellm_proxy: str) -> None:
    from tests.providers.conftest import LITELLM_KEY, fast_settings, run

    provider = OpenAIChatProvider.from_azure(
        endpoint=litellm_proxy, api_key=LITELLM_KEY, deployment="gpt-test",
        api_version="2024-08-01-preview", settings=fast_settings(request_timeout_s=60.0))

    async def turn() -> BaseException:
        try:
            await provider.generate([Message("user", "word " * 9000)],
                                    SamplingParams(n=4, max_tokens=16))
        except Exception as exc:
            return exc
        finally:
            await provider.aclose()
        raise AssertionError("the turn did not fail")

    error = run(turn())
    assert isinstance(error, ContextLengthError), repr(error)
    assert error.limit == 2048 and error.tokens is not None and error.tokens > 8000
    assert "this model takes 2,048" in str(error)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_built_in_model_says_it_too(gguf_path: Any) -> None:
    from rlhf_desktop.providers.local import LocalProvider
    from tests.providers.conftest import run

    provider = LocalProvider(gguf_path, n_threads=1, n_ctx=512)

    async def turn() -> BaseException:
        try:
            await provider.generate([Message("user", "the river runs " * 400)],
                                    SamplingParams(n=2, max_tokens=8))
        except Exception as exc:
            return exc
        finally:
            await provider.aclose()
        raise AssertionError("the turn did not fail")

    error = run(turn())
    assert isinstance(error, ContextLengthError), repr(error)
    assert error.limit == 512 and error.tokens is not None and error.tokens > 1000
    assert f"about {round(error.tokens, -2):,} tokens; the built-in model takes 512." in str(error)
    assert "Settings → Context size (n_ctx)" in str(error)
