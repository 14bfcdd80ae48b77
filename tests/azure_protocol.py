"""The request handler of :mod:`tests.azure_server`: Azure's and OpenAI's chat protocol.

Validation as Azure does it, the error bodies Azure and OpenAI send, SSE streaming with
chunked transfer encoding, and the faults (see :mod:`tests.azure_server`).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from tests.azure_server import AzureServer, Fault

SUPPORTED_API_VERSIONS = (
    "2023-05-15", "2023-12-01-preview", "2024-02-01", "2024-02-15-preview",
    "2024-05-01-preview", "2024-06-01", "2024-08-01-preview", "2024-09-01-preview",
    "2024-10-01-preview", "2024-10-21", "2024-12-01-preview", "2025-01-01-preview",
    "2025-03-01-preview", "2025-04-01-preview",
)
STREAM_OPTIONS_SINCE = "2024-09-01-preview"
WORDS = ("sun", "river", "stone", "light", "cloud", "garden", "bridge", "window",
         "music", "forest", "candle", "harbor", "meadow", "lantern", "valley", "echo")
FAULTS = ("auth", "forbidden", "not_found", "rate_limit", "server_error", "drop", "slow",
          "truncate", "drop_mid", "sse_error", "content_filter", "choice_filter",
          "choice_error", "ignore_n", "choice_unfinished", "litellm_upstream_auth",
          "litellm_cooldown")
# LiteLLM's proxy (litellm[proxy] 1.108.7, measured): a wrong key without a key database,
# and the upstream Azure refusing the proxy's own key (LiteLLM wraps Azure's body).
LITELLM_NO_DB = {"error": {"message": "No connected db.", "type": "no_db_connection",
                           "param": None, "code": "400"}}
LITELLM_UPSTREAM_AUTH = (
    "litellm.AuthenticationError: AzureException AuthenticationError - Access denied due to "
    "invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource.\n\n"
    "LiteLLM: model group '{deployment}' failed with the error above. No fallback was "
    "attempted.")
MAGIC = re.compile(r"\[\[fault:([a-z_]+)(?:\*(\d+))?\]\]")
AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
SAFE_FILTER = {name: {"filtered": False, "severity": "safe"}
               for name in ("hate", "self_harm", "sexual", "violence")}


def reply_tokens(index: int, seed: int | None, length: int) -> list[str]:
    """The deterministic words (one per chunk) of choice ``index``."""
    label = f" {index}" if seed is None else f" {index} seed {seed}"
    offset = index * 5 + (seed or 0)
    words = [f" {WORDS[(offset + k) % len(WORDS)]}" for k in range(max(0, length - 2))]
    return ["Reply", f"{label}:", *words]


def _error(code: Any, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class Handler(BaseHTTPRequestHandler):
    """One request; ``state`` is the :class:`AzureServer` (set by a subclass)."""

    protocol_version = "HTTP/1.1"
    state: AzureServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    # ------------------------------------------------------------------ plumbing

    def _send_json(self, status: int, payload: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("apim-request-id", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {data}\n\n")

    def _abort(self) -> None:
        """Cut the connection without a proper end (RST where possible)."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()
        self.close_connection = True

    def _read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        """``/v1/models`` (OpenAI mode)."""
        self.close_connection = True
        if urlsplit(self.path).path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": self.state.model, "object": "model", "owned_by": "test"}]})
            return
        self._send_json(404, _error("404", "Resource not found"))

    def do_POST(self) -> None:
        """Chat completions, Azure or OpenAI style."""
        self.close_connection = True
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        body = self._read_body()
        record = self.state.record("POST", parts.path, query,
                                   {k.lower(): v for k, v in self.headers.items()}, body)
        azure = AZURE_PATH.match(parts.path)
        if azure:
            if not self._check_azure(azure.group(1), query):
                return
            version = query["api-version"]
        elif parts.path == "/v1/chat/completions":
            if not self._check_openai(body):
                return
            version = "openai"
        else:
            self._send_json(404, _error("404", "Resource not found"))
            return
        if not self._check_body(body, version):
            return
        assert body is not None
        fault = self.state.take_fault(body)
        record.fault = fault.name if fault else None
        if fault is not None and self._request_fault(fault):
            return
        self.state.note_active(+1)
        try:
            self._answer(body, fault, version)
        finally:
            self.state.note_active(-1)

    def _check_azure(self, deployment: str, query: dict[str, str]) -> bool:
        version = query.get("api-version")
        if not version:
            self._send_json(404, _error("404", "Resource not found"))
            return False
        if self.headers.get("api-key") != self.state.api_key and self.state.litellm_keys:
            self._send_json(400, LITELLM_NO_DB)  # LiteLLM without a key database
            return False
        if self.headers.get("api-key") != self.state.api_key:
            self._send_json(401, _error("401", (
                "Access denied due to invalid subscription key or wrong API endpoint. Make "
                "sure to provide a valid key for an active subscription and use a correct "
                "regional API endpoint for your resource.")))
            return False
        if version not in self.state.api_versions:
            self._send_json(400, _error("BadRequest", "API version not supported"))
            return False
        if deployment != self.state.deployment:
            self._send_json(404, _error("DeploymentNotFound", (
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.")))
            return False
        return True

    def _check_openai(self, body: dict[str, Any] | None) -> bool:
        auth = self.headers.get("Authorization", "")
        given = auth.removeprefix("Bearer ").strip()
        if given != self.state.api_key:
            self._send_json(401, _error("invalid_api_key", (
                f"Incorrect API key provided: {given}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."),
                type="invalid_request_error", param=None))
            return False
        model = (body or {}).get("model")
        if model != self.state.model:
            self._send_json(404, _error("model_not_found", (
                f"The model `{model}` does not exist or you do not have access to it."),
                type="invalid_request_error", param=None))
            return False
        return True

    def _check_body(self, body: dict[str, Any] | None, version: str) -> bool:
        def bad(message: str, param: str | None = None) -> bool:
            self._send_json(400, _error(None, message, param=param,
                                        type="invalid_request_error"))
            return False

        if body is None:
            return bad("We could not parse the JSON body of your request.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return bad("'messages' is a required property", "messages")
        for message in messages:
            if (not isinstance(message, dict) or message.get("role") not in
                    ("system", "user", "assistant", "developer", "tool")
                    or not isinstance(message.get("content"), str)):
                return bad("Invalid message in 'messages'", "messages")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 128:
            return bad("n must be an integer between 1 and 128", "n")
        if "stream_options" in body:
            if not body.get("stream"):
                return bad("The 'stream_options' parameter is only allowed when 'stream' "
                           "is enabled.", "stream_options")
            if version != "openai" and version < STREAM_OPTIONS_SINCE:
                return bad("Unrecognized request argument supplied: stream_options")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return bad("max_tokens must be a positive integer", "max_tokens")
        if self.state.reasoning_model and "max_tokens" in body:
            return bad("Unsupported parameter: 'max_tokens' is not supported with this "
                       "model. Use 'max_completion_tokens' instead.", "max_tokens")
        if self.state.reasoning_model and body.get("temperature", 1) != 1:
            return bad(f"Unsupported value: 'temperature' does not support "
                       f"{body['temperature']} with this model. Only the default (1) value "
                       "is supported.", "temperature")
        return True

    def _request_fault(self, fault: Fault) -> bool:
        """Faults that replace the whole answer; True when the request was handled."""
        opts, name = fault.options, fault.name
        if name == "auth":
            self._send_json(401, _error("401", "Access denied due to invalid subscription key."))
        elif name == "forbidden":
            self._send_json(403, _error("403", "Public access is disabled."))
        elif name == "not_found":
            self._send_json(404, _error("DeploymentNotFound",
                                        "The API deployment for this resource does not exist."))
        elif name == "rate_limit":
            wait = opts.get("retry_after", 1)
            self._send_json(429, _error(opts.get("code", "429"), (
                "Requests to the ChatCompletions_Create Operation have exceeded token rate "
                f"limit of your current OpenAI S0 pricing tier. Please retry after {wait} "
                "seconds.")), headers={"Retry-After": str(wait)})
        elif name == "server_error":
            self._send_json(500, _error("InternalServerError", (
                "The server had an error while processing your request. Sorry about that!")))
        elif name == "content_filter":
            self._send_json(400, {"error": {
                "message": ("The response was filtered due to the prompt triggering Azure "
                            "OpenAI's content management policy."),
                "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    **SAFE_FILTER, "violence": {"filtered": True, "severity": "medium"}}}}})
        elif name == "litellm_upstream_auth":
            message = LITELLM_UPSTREAM_AUTH.replace("{deployment}", self.state.deployment)
            self._send_json(401, {"error": {"message": message, "type": "authentication_error",
                                            "param": None, "code": "401"}})
        elif name == "litellm_cooldown":
            wait = opts.get("retry_after", 5)
            self._send_json(429, {"error": {"message": (
                f"No deployments available for selected model, Try again in {wait} seconds. "
                "All deployments for selected model are in cooldown. Passed model="
                f"{self.state.deployment}. pre-call-checks=False, cooldown_list=['00de408f']"),
                "type": "all_deployments_in_cooldown", "param": None, "code": "429"}},
                headers={"Retry-After": str(wait)})
        elif name == "drop":
            self._abort()
        elif name == "slow":
            self.state.stopping.wait(float(opts.get("delay", 2.0)))
            return False
        else:
            return False
        return True

    # ------------------------------------------------------------------ answers

    def _answer(self, body: dict[str, Any], fault: Fault | None, version: str) -> None:
        n = int(body.get("n", 1))
        if (self.state.ignore_n or self.state.llama_like
                or (fault is not None and fault.name == "ignore_n")):
            n = 1
        seed = body.get("seed") if isinstance(body.get("seed"), int) else None
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 10_000
        replies = []
        for i in range(n):
            full = reply_tokens(i, seed, self.state.reply_length + i)
            replies.append((full[:max_tokens], "length" if len(full) > max_tokens else "stop"))
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 4
                            for m in body["messages"])
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_test"}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if not self.state.llama_like:
                self._stream(replies, fault, meta, prompt_tokens, include_usage, version)
                return
            with self.state._lock:
                self.state.waiting += 1
            with self.state.generation_lock:
                with self.state._lock:
                    self.state.waiting -= 1
                self._stream(replies, fault, meta, prompt_tokens, include_usage, version)
            return
        choices = [{"index": i, "finish_reason": reason, "logprobs": None,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "content_filter_results": SAFE_FILTER}
                   for i, (tokens, reason) in enumerate(replies)]
        completion = sum(len(t) for t, _ in replies)
        self._send_json(200, {**meta, "object": "chat.completion", "choices": choices,
                              "usage": {"prompt_tokens": prompt_tokens,
                                        "completion_tokens": completion,
                                        "total_tokens": prompt_tokens + completion}})

    def _stream(self, replies: list[tuple[list[str], str]], fault: Fault | None,
                meta: dict[str, Any], prompt_tokens: int, include_usage: bool,
                version: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        name = fault.name if fault else ""
        opts = fault.options if fault else {}
        after = int(opts.get("after", 2))
        special = int(opts.get("choice", 1))

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            self._event({**meta, "object": "chat.completion.chunk", "choices": choices,
                         **extra})

        if version != "openai":
            self._event({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                         "prompt_filter_results": [{"prompt_index": 0,
                                                    "content_filter_results": SAFE_FILTER}]})
        chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                "finish_reason": None} for i in range(len(replies))])
        live = {i: 0 for i in range(len(replies))}
        sent = 0
        rounds = 0
        while live:
            if self.state.stopping.is_set():
                self._abort()
                return
            if self.state.llama_like and self.state.waiting:
                # llama-cpp-python: interrupted by a waiting request. Behind LiteLLM the
                # stream then ends with finish_reason "stop" (``interrupt_finish``).
                if self.state.interrupt_finish:
                    chunk([{"index": i, "delta": {}, "finish_reason": self.state.interrupt_finish}
                           for i in live])
                    if include_usage:
                        chunk([], usage={"prompt_tokens": prompt_tokens,
                                         "completion_tokens": sent,
                                         "total_tokens": prompt_tokens + sent})
                self._event("[DONE]")
                self._chunk("")
                return
            if rounds == after and name in ("truncate", "drop_mid", "sse_error"):
                if name == "drop_mid":
                    self._abort()
                    return
                if name == "sse_error":
                    self._event({"error": {"message": "The server had an error while "
                                           "processing your request.", "code": "server_error"}})
                if name == "truncate" and opts.get("finish"):  # a proxy's idea of the end
                    chunk([{"index": i, "delta": {}, "finish_reason": opts["finish"]}
                           for i in live])
                    self._event("[DONE]")
                self._chunk("")  # terminating chunk: a clean end with no [DONE]
                return
            for i in list(live):
                tokens, reason = replies[i]
                pos = live[i]
                if rounds == after and i == special and name in ("choice_filter",
                                                                  "choice_error"):
                    if name == "choice_filter":
                        chunk([{"index": i, "delta": {}, "finish_reason": "content_filter",
                                "content_filter_results": {
                                    **SAFE_FILTER,
                                    "violence": {"filtered": True, "severity": "high"}}}])
                    else:
                        chunk([{"index": i, "delta": {}, "finish_reason": "error",
                                "error": {"code": "model_error",
                                          "message": "The model failed on this choice."}}])
                    del live[i]
                    continue
                if pos < len(tokens):
                    chunk([{"index": i, "delta": {"content": tokens[pos]},
                            "finish_reason": None, "content_filter_results": SAFE_FILTER}])
                    live[i] = pos + 1
                    sent += 1
                else:
                    # choice_unfinished: this choice never gets its finish reason, the stream
                    # still ends cleanly (as LiteLLM relays llama.cpp's server with n > 1).
                    if not (name == "choice_unfinished" and i == special):
                        chunk([{"index": i, "delta": {}, "finish_reason": reason}])
                    del live[i]
            rounds += 1
            if self.state.chunk_delay_s:
                time.sleep(self.state.chunk_delay_s)
        if include_usage:
            chunk([], usage={"prompt_tokens": prompt_tokens, "completion_tokens": sent,
                             "total_tokens": prompt_tokens + sent})
        self._event("[DONE]")
        self._chunk("")
