"""A small local server that speaks Azure OpenAI's (and OpenAI's) chat protocol, with faults.

Real sockets, real HTTP/1.1, Server-Sent Events with chunked transfer encoding, so the
``openai`` client runs exactly as it does against Azure. It checks requests as Azure does,
so a client bug fails the test:

* ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` with an
  ``api-key`` header (Azure), or ``POST /v1/chat/completions`` with ``Authorization:
  Bearer`` (OpenAI); ``GET /v1/models``;
* an unknown path or a missing ``api-version`` -> 404 ``Resource not found``; an unknown
  API version -> 400 ``API version not supported``; a wrong key -> 401; an unknown
  deployment -> 404 ``DeploymentNotFound``; an unknown OpenAI model -> 404
  ``model_not_found``; ``stream_options`` with an API version older than
  2024-09-01-preview -> 400 ``Unrecognized request argument supplied: stream_options``.

Replies are deterministic: choice ``i`` says ``Reply i: w1 w2 ...`` (``Reply i seed s: ...``
when a seed is sent), one word per SSE chunk, the choices interleaved, with a short delay.

Faults, for the next request(s): ``server.inject(name, times=1, **options)`` (with
``match_seed=S`` only requests with that seed are hit), or a magic
word in the last user message, ``[[fault:name]]`` or ``[[fault:name*K]]`` (the first K
requests with that exact text fail). Names (options in brackets):

``auth`` 401, ``forbidden`` 403, ``not_found`` 404 DeploymentNotFound,
``rate_limit`` 429 with Retry-After [retry_after=1, code="429"], ``server_error`` 500, ``drop``
(close the connection before answering), ``slow`` (no byte for [delay=2.0] s),
``truncate`` (end the stream cleanly after [after=2] words with no finish reason and no
``[DONE]``; with [finish="stop"] end it with that finish reason and ``[DONE]``, as a proxy
does, so ``after=0`` gives an empty reply), ``drop_mid`` (cut the connection after
[after=2] words), ``sse_error`` (an ``error`` event after [after=2] words),
``content_filter`` (request-level 400 with code ``content_filter`` and ``innererror``),
``choice_filter`` (choice [choice=1] ends with ``finish_reason`` ``content_filter`` after
[after=2] words), ``choice_error`` (choice
[choice=1] ends with finish_reason ``error`` and an ``error`` object), ``ignore_n`` (answer
with one choice, as llama.cpp's server does), ``litellm_upstream_auth`` (LiteLLM's 401 when
the Azure behind it refuses the proxy's own key: ``litellm.AuthenticationError:
AzureException ...``), ``litellm_cooldown`` (LiteLLM's 429 ``all_deployments_in_cooldown``
after such failures [retry_after=5]).

``server.ignore_n = True`` makes ``ignore_n`` permanent; ``server.litellm_keys = True``
answers a wrong key as a LiteLLM proxy without a key database does (400 "No connected
db."); ``server.llama_like = True`` also
serializes streams and cuts a running one short when another request waits, as
llama-cpp-python's server does (``interrupt_requests``); ``server.interrupt_finish = "stop"``
ends such a cut stream with ``finish_reason: "stop"``, as the LiteLLM proxy in front of it
does. ``server.max_active`` is the most requests answered at once. Run standalone with
``python -m tests.azure_server --port 8123``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.azure_protocol import (
    FAULTS,
    MAGIC,
    SUPPORTED_API_VERSIONS,
    Handler,
    reply_tokens,
)

__all__ = ["FAULTS", "AzureServer", "Fault", "Recorded", "main", "reply_tokens"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (cancel, timeout) is normal here; anything else is printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Fault:
    """One injected fault and how many more requests it applies to."""

    name: str
    times: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recorded:
    """A request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names."""
    body: dict[str, Any] | None
    fault: str | None = None


class LoopbackServer:
    """A test HTTP server on 127.0.0.1 served by a daemon thread (``with`` starts/stops it).
    Subclasses set ``self._httpd`` and ``self._thread = None``."""

    _httpd: _Server
    _thread: threading.Thread | None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._httpd.server_address[1])

    @property
    def endpoint(self) -> str:
        """The Azure endpoint (``AZURE_OPENAI_ENDPOINT``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``OPENAI_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name=f"{type(self).__name__}-thread", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AzureServer(LoopbackServer):
    """The server; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        *,
        api_key: str = "test-azure-key-0123456789",
        deployment: str = "gpt-test",
        model: str = "gpt-test-model",
        host: str = "127.0.0.1",
        port: int = 0,
        chunk_delay_s: float = 0.002,
        reply_length: int = 8,
        api_versions: tuple[str, ...] = SUPPORTED_API_VERSIONS,
    ) -> None:
        self.api_key = api_key
        self.deployment = deployment
        self.model = model
        self.chunk_delay_s = chunk_delay_s
        self.reply_length = reply_length
        self.api_versions = api_versions
        self.ignore_n = False
        self.litellm_keys = False
        """Like a LiteLLM proxy without a key database: a wrong key gets 400
        ``no_db_connection`` ("No connected db."), not Azure's 401."""
        self.reasoning_model = False
        """Like OpenAI's reasoning models: refuse ``max_tokens`` and a non-default
        ``temperature`` with 400 (they want ``max_completion_tokens``)."""
        self.llama_like = False
        """Like llama-cpp-python's server: one choice, one stream at a time, and a running
        stream ends with ``[DONE]`` (no finish reason) as soon as another request waits."""
        self.interrupt_finish: str | None = None
        """With ``llama_like``: the finish reason an interrupted stream ends with (LiteLLM in
        front of llama.cpp's server sends ``"stop"``); None: no finish reason, as llama.cpp."""
        self.requests: list[Recorded] = []
        self.generation_lock = threading.Lock()
        self.waiting = 0
        self.active = 0
        self.max_active = 0
        """The most chat requests this server answered at the same time."""
        self._faults: list[Fault] = []
        self._magic_counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.stopping.set()
        super().stop()

    def environment(self, api_version: str = "2024-10-21") -> dict[str, str]:
        """The seed's AZURE_OPENAI_* variables that point the app at this server."""
        return {
            "AZURE_OPENAI_ENDPOINT": self.endpoint,
            "AZURE_OPENAI_API_KEY": self.api_key,
            "AZURE_OPENAI_DEPLOYMENT_NAME": self.deployment,
            "AZURE_OPENAI_API_VERSION": api_version,
        }

    def note_active(self, change: int) -> None:
        """Count a chat request starting (+1) or ending (-1); keeps :attr:`max_active`."""
        with self._lock:
            self.active += change
            self.max_active = max(self.max_active, self.active)

    def inject(self, name: str, times: int = 1, **options: Any) -> None:
        """Apply fault ``name`` to the next ``times`` requests."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.append(Fault(name, times, options))

    def reset(self) -> None:
        """Forget faults, recorded requests and ``ignore_n``."""
        with self._lock:
            self._faults.clear()
            self._magic_counts.clear()
            self.requests.clear()
            self.ignore_n = False
            self.llama_like = False
            self.reasoning_model = False
            self.interrupt_finish = None
            self.max_active = self.active

    def take_fault(self, body: dict[str, Any] | None) -> Fault | None:
        """The fault for this request: an injected one first, else a magic word."""
        with self._lock:
            seed = (body or {}).get("seed")
            for pos, fault in enumerate(self._faults):
                if "match_seed" in fault.options and fault.options["match_seed"] != seed:
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.pop(pos)
                return fault
            text = _last_user_text(body)
            match = MAGIC.search(text)
            if match is None or match.group(1) not in FAULTS:
                return None
            name, limit = match.group(1), int(match.group(2) or 1_000_000)
            used = self._magic_counts.get((name, text), 0)
            if used >= limit:
                return None
            self._magic_counts[(name, text)] = used + 1
            return Fault(name)

    def record(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: dict[str, Any] | None) -> Recorded:
        """Keep a request for the test to inspect."""
        item = Recorded(method, path, query, headers, body)
        with self._lock:
            self.requests.append(item)
        return item


def _last_user_text(body: dict[str, Any] | None) -> str:
    messages = (body or {}).get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _make_handler(server: AzureServer) -> type[BaseHTTPRequestHandler]:
    class BoundHandler(Handler):
        state = server

    return BoundHandler


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, printing the variables to point the app at it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--key", default="test-azure-key-0123456789")
    parser.add_argument("--deployment", default="gpt-test")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between words")
    parser.add_argument("--length", type=int, default=24, help="words per reply")
    args = parser.parse_args(argv)
    server = AzureServer(api_key=args.key, deployment=args.deployment, port=args.port,
                         chunk_delay_s=args.delay, reply_length=args.length).start()
    print(f"AZURE_OPENAI_ENDPOINT={server.endpoint}")
    print(f"AZURE_OPENAI_API_KEY={server.api_key}")
    print(f"AZURE_OPENAI_DEPLOYMENT_NAME={server.deployment}")
    print("AZURE_OPENAI_API_VERSION=2024-10-21")
    print(f"# OpenAI mode: OPENAI_BASE_URL={server.base_url} OPENAI_MODEL={server.model}")
    print("# faults: put [[fault:NAME]] in a message; NAME in " + ", ".join(FAULTS))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
