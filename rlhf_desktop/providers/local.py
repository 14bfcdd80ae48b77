"""The built-in offline model: a GGUF file run by llama.cpp through ``xllamacpp``.

``xllamacpp`` (prebuilt abi3 wheels on PyPI: no compiler on a user's first run) embeds
llama.cpp's own server engine in the process. ``xllamacpp`` is imported only when the model
is first loaded, so importing this module costs nothing and the window starts fast.

Generation runs on one dedicated worker thread: the N candidates are generated one after
another with seeds ``base + i`` (one llama.cpp slot, so a candidate reuses the prompt that
the one before left in the KV cache) and their text is handed to the event loop with
``call_soon_threadsafe``. The engine calls back once per token; the callback returns
``True`` to stop a reply, which is how a cancel (Esc) ends one reply within a token.

The engine always opens an HTTP listener (llama.cpp's server). It is bound to a Unix socket
in a private (0700) temporary folder and guarded by a random API key that never leaves
this process, so nothing else on the machine can use it; the provider itself uses it only
for ``/tokenize`` (:meth:`LocalProvider.count_tokens`), which llama.cpp answers on its HTTP
threads, alongside a running generation.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import http.client
import json
import logging
import random
import secrets
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop.core.chat_models import tuned_version, version_name
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers.base import (
    CANCELLED,
    ERROR,
    BaseProvider,
    CandidateTracker,
    StreamEvent,
    build_messages,
)
from rlhf_desktop.providers.errors import (
    ContextLengthError,
    ModelLoadError,
    ProviderError,
    context_length_message,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Text:
    index: int
    text: str


@dataclass(frozen=True)
class _Finish:
    index: int
    reason: str
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class _Fatal:
    error: ProviderError


_END = object()


class _Mailbox:
    """Hands items from the worker thread to the event loop.

    Waking the loop costs a thread switch and a turn of the GIL while the worker is
    generating, so text wakes it at most every ``interval`` seconds (the first text of each
    candidate and every other item wake it at once); items keep their order.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float,
                 stop: threading.Event) -> None:
        self._loop = loop
        self._interval = interval
        self._stop = stop
        self._items: collections.deque[object] = collections.deque()
        self._ready = asyncio.Event()
        self._scheduled = False
        self._last_wake = 0.0
        self._started: set[int] = set()

    def post(self, item: object) -> None:
        """Worker thread: queue ``item`` and wake the loop when due."""
        self._items.append(item)
        urgent = True
        if isinstance(item, _Text):
            urgent = item.index not in self._started
            self._started.add(item.index)
        if self._scheduled:
            return
        now = time.perf_counter()
        if not urgent and now - self._last_wake < self._interval:
            return
        self._scheduled = True
        self._last_wake = now
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()

    def _wake(self) -> None:
        self._scheduled = False
        self._ready.set()

    async def take(self) -> list[object]:
        """Event loop: wait for items and return all that are queued, in order."""
        while not self._items:
            self._ready.clear()
            if self._items:
                break
            await self._ready.wait()
        out: list[object] = []
        while self._items:
            out.append(self._items.popleft())
        return out


_HTTP_TIMEOUT_S = 30.0
_UNIX_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
CPU_FLAGS_NEEDED = ("avx", "avx2", "fma", "f16c", "bmi2")
"""What xllamacpp's x86-64 CPU wheel is compiled for (GGML_NATIVE=OFF: x86-64-v3, no AVX-512
or AMX, no runtime dispatch). A CPU without them would die of SIGILL at the first token."""


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (x86 Linux), else ``None`` (unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def missing_cpu_flags(flags: set[str] | None) -> list[str]:
    """The needed x86 features that ``flags`` lacks ([] when unknown or not x86)."""
    if flags is None or "sse2" not in flags:  # not x86 (an ARM build has its own wheel)
        return []
    return [f for f in CPU_FLAGS_NEEDED if f not in flags]


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the engine's private listener)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the socket file instead of a host and port."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Engine:
    """One ``xllamacpp.Server`` (llama.cpp's server engine, in this process) and its listener.

    ``xllamacpp.Server`` is thread-safe: generation runs on the provider's worker thread and
    :meth:`tokenize` on any thread, over a new connection each time.
    """

    def __init__(self, server: Any, address: str, key: str, folder: Path) -> None:
        self.server = server
        self._key = key
        self._folder = folder
        # The socket folder goes when the engine does, or at exit if nobody closed it.
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder, True)
        self._unix: str | None = None
        self._host, self._port = "127.0.0.1", 0
        if address.startswith("unix://"):
            self._unix = address[len("unix://"):]
        else:
            parts = urllib.parse.urlsplit(address)
            self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        conn: http.client.HTTPConnection = (
            _UnixConnection(self._unix, _HTTP_TIMEOUT_S) if self._unix is not None
            else http.client.HTTPConnection(self._host, self._port, timeout=_HTTP_TIMEOUT_S))
        try:
            conn.request("POST", route, body=json.dumps(body).encode("utf-8"),
                         headers={"Content-Type": "application/json",
                                  "Authorization": f"Bearer {self._key}"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"llama.cpp answered {route} with HTTP {response.status}")
        return json.loads(data)

    def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text`` (no BOS), by llama.cpp's own tokenizer."""
        return [int(t) for t in self._post("/tokenize", {"content": text,
                                                         "add_special": False})["tokens"]]

    def close(self) -> None:
        """Stop the engine (joins its threads) and remove its socket folder."""
        self.server = None  # the last reference: ~Server stops the loop and the listener
        self._cleanup()


class LocalProvider(BaseProvider):
    """llama.cpp (``xllamacpp``) on a local GGUF file (SmolLM2-135M-Instruct by default).

    ``n_threads`` (default 1, the fastest setting measured on the target machines) is
    used for generation and for prompt processing alike.
    The model is loaded lazily on first use (or by :meth:`load`).
    """

    name = "local"

    def __init__(self, model_path: str | Path, *, n_threads: int = 1, n_ctx: int = 2048,
                 lora_path: str | Path | None = None) -> None:
        self.model_path = Path(model_path)
        self.lora_path = Path(lora_path) if lora_path else None
        """A tuned chat-model version: its LoRA adapter applied on top of the base file."""
        self.model = self.model_path.stem + (
            f"+{self.lora_path.parent.name}" if self.lora_path else "")
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._engine: _Engine | None = None
        self._load_lock = threading.Lock()
        self._closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llama"
        )
        self._count_cached = functools.lru_cache(maxsize=256)(self._count_uncached)
        self.load_seconds: float | None = None
        self.wake_interval_s = 0.03
        """Text reaches the event loop in batches at most this often (about 30 per s)."""

    def describe(self) -> str:
        """``Built-in model: <file name>[, chat model vN (tuned)] (n threads)``."""
        tuned = f", {version_name(tuned_version(self.model))}" if self.lora_path else ""
        return f"Built-in model: {self.model_path.name}{tuned} ({self.n_threads} thread(s))"

    async def load(self) -> None:
        """Load the model in the worker thread (idempotent)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_sync)

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is for this model, counted by its own tokenizer.

        llama.cpp's tokenizer of the loaded GGUF file (``/tokenize``, no BOS); the chat
        template adds a few tokens per message on top, which are not counted here.

        Thread-safe: any thread may call it, also while a reply is being generated (llama.cpp
        tokenizes on its HTTP threads, not in the generation loop, so a count never waits for
        a reply). Cheap: a local-socket round trip of about a millisecond, and the last 256
        texts are remembered, so calling it on every keystroke is fine. Empty text is 0
        without touching the model. The first call loads the model if no reply has done so
        yet (about half a second; it raises :class:`ModelLoadError` as :meth:`load` does),
        so a UI should make that first call off its own thread or after :meth:`load`.
        Raises :class:`ProviderError` after :meth:`aclose`.
        """
        if not text:
            return 0
        return int(self._count_cached(text))

    def _count_uncached(self, text: str) -> int:
        engine = self._load_sync()
        try:
            return len(engine.tokenize(text))
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                f"The built-in model could not count tokens ({type(exc).__name__}).",
                provider=self.name) from exc

    def _load_sync(self) -> _Engine:
        engine = self._engine
        if engine is not None:
            return engine
        with self._load_lock:
            if self._closed:
                raise ProviderError("The built-in model is closed.", provider=self.name)
            if self._engine is None:
                self._engine = self._start_engine()
            return self._engine

    def _start_engine(self) -> _Engine:
        if not self.model_path.is_file():
            raise ModelLoadError(
                f"The built-in model file {self.model_path} does not exist. Set gguf_path to "
                "a GGUF file, or run `make run` to install the default model.",
                provider=self.name,
            )
        if self.lora_path is not None and not self.lora_path.is_file():
            raise ModelLoadError(
                f"The tuned chat-model adapter {self.lora_path} does not exist. Choose the "
                "base model (chat_model_version 0) or another version.", provider=self.name)
        missing = missing_cpu_flags(cpu_flags())
        if missing:
            raise ModelLoadError(
                "This CPU lacks " + ", ".join(f.upper() for f in missing) + ", which the "
                "built-in model's prebuilt llama.cpp needs (x86-64-v3: Intel Haswell or AMD "
                "Zen and later). Configure Azure OpenAI or OpenAI in .env instead.",
                provider=self.name)
        try:
            import xllamacpp
        except ImportError as exc:
            why = "is not installed" if isinstance(exc, ModuleNotFoundError) else (
                f"could not be loaded ({exc}; it needs the GCC OpenMP runtime libgomp.so.1)")
            raise ModelLoadError(
                f"xllamacpp {why}, so the built-in model cannot run. Run "
                "`make setup`, or configure Azure OpenAI or OpenAI in .env.",
                provider=self.name,
            ) from exc
        started = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="rlhf-llama-"))  # mode 0700
        sock = folder / "engine.sock"
        key = secrets.token_urlsafe(32)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        if self.lora_path is not None:
            params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(self.lora_path), 1.0)]
        params.n_ctx = self.n_ctx
        params.n_parallel = 1  # one slot: candidates in turn, each reusing the cached prompt
        params.cpuparams.n_threads = self.n_threads
        # Prompt processing on n_threads too: on a busy machine every core made a 40-token
        # prompt take 15 s instead of 0.4 s.
        params.cpuparams_batch.n_threads = self.n_threads
        params.ctx_shift = False  # never drop the start of the conversation silently
        # The listener: a Unix socket in a private folder, else loopback; a random key.
        unix = hasattr(socket, "AF_UNIX") and len(str(sock)) < _UNIX_PATH_MAX
        params.hostnames = [str(sock)] if unix else ["127.0.0.1"]
        params.port = 0
        params.api_keys = [key]
        params.ui = False
        params.n_threads_http = 2
        params.verbosity = 0
        params.endpoint_metrics = True  # answered by the main loop: see below
        try:
            server = xllamacpp.Server(params)
            # Server() returns just before its thread enters llama.cpp's main loop, and a
            # terminate() (closing the engine) that comes before the loop starts is lost: the
            # close would then wait forever, holding the GIL. A metrics request is answered
            # by that loop, so once it returns the engine can be closed at any time.
            server.handle_metrics()
        except (ValueError, RuntimeError, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            what = f"{self.model_path.name} with the adapter {self.lora_path.name}" if (
                self.lora_path) else self.model_path.name
            raise ModelLoadError(
                f"Could not load {what} as a GGUF model ({type(exc).__name__}). "
                "Set gguf_path to a valid GGUF file.",
                provider=self.name,
            ) from exc
        engine = _Engine(server, str(server.listening_address), key, folder)
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s in %.2f s (%d thread(s), n_ctx=%d)", self.model_path.name,
                 self.load_seconds, self.n_threads, self.n_ctx)
        return engine

    async def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Generate ``params.n`` candidates one after another, streaming every token."""
        n = max(1, params.n)
        tracker = CandidateTracker(n)
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        mailbox = _Mailbox(loop, self.wake_interval_s, stop)
        seed_base = params.seed if params.seed is not None else random.randrange(1, 2**30)
        wire = build_messages(messages, params)
        worker = loop.run_in_executor(
            self._executor, self._generate_sync, wire, params, n, seed_base, stop, mailbox.post
        )
        watcher: asyncio.Task[None] | None = None
        if cancel is not None:
            watcher = asyncio.create_task(_stop_on_set(cancel, stop))
        errors: dict[int, str] = {}
        fatal: ProviderError | None = None
        try:
            ended = False
            while not ended:
                for item in await mailbox.take():
                    if item is _END:
                        ended = True
                        break
                    ready = self._handle(item, tracker, errors)
                    if isinstance(item, _Fatal):
                        fatal = item.error
                    if ready is not None:
                        yield ready
            await worker
            if stop.is_set():
                for i in tracker.unfinished():
                    if i not in errors:
                        done = tracker.finish(i, CANCELLED)
                        if done is not None:
                            yield done
            if fatal is not None and not tracker.finished:
                for i in tracker.unfinished():
                    tracker.finish(i, ERROR, error=errors.get(i, fatal.message))
                fatal.partial = tracker.snapshot()
                raise fatal
            for i in tracker.unfinished():
                done = tracker.finish(i, ERROR, error=errors.get(
                    i, fatal.message if fatal else "generation failed"))
                if done is not None:
                    yield done
        finally:
            stop.set()
            if watcher is not None:
                watcher.cancel()

    @staticmethod
    def _handle(item: object, tracker: CandidateTracker,
                errors: dict[int, str]) -> StreamEvent | None:
        """Turn one item from the worker into the event to yield (if any)."""
        if isinstance(item, _Text):
            return tracker.add(item.index, item.text)
        if isinstance(item, _Finish):
            if item.reason == ERROR:
                errors[item.index] = item.error or "generation failed"
                return None
            return tracker.finish(item.index, item.reason, error=item.error,
                                  prompt_tokens=item.prompt_tokens,
                                  completion_tokens=item.completion_tokens)
        return None

    def _generate_sync(
        self,
        messages: list[dict[str, str]],
        params: SamplingParams,
        n: int,
        seed_base: int,
        stop: threading.Event,
        post: Callable[[object], None],
    ) -> None:
        """Worker thread: load if needed, then generate the candidates in order.

        Never raises: every failure reaches the event loop as ``_Finish``/``_Fatal``.
        """
        last_error: ProviderError | None = None
        try:
            engine = self._load_sync()
            prompt_tokens = self._prompt_estimate(engine, messages)
            for i in range(n):
                if stop.is_set():
                    break
                try:
                    if prompt_tokens >= self.n_ctx - 1:
                        raise ValueError("the prompt does not fit the context window")
                    self._one_candidate(engine, messages, params, i, seed_base + i, stop, post)
                except Exception as exc:
                    log.warning("built-in model: candidate %d failed: %s", i, type(exc).__name__)
                    last_error = self._generation_error(exc, prompt_tokens)
                    post(_Finish(i, ERROR, error=last_error.message))
            if last_error is not None:
                post(_Fatal(last_error))
        except ProviderError as exc:
            post(_Fatal(exc))
        except Exception as exc:
            log.exception("built-in model failed")
            post(_Fatal(ProviderError(
                f"The built-in model failed ({type(exc).__name__}). See the log for details.",
                provider=self.name)))
        finally:
            post(_END)

    @staticmethod
    def _prompt_estimate(engine: _Engine, messages: list[dict[str, str]]) -> int:
        """Tokens of the message texts plus a few per message for the chat template."""
        text = "\n".join(m["content"] for m in messages)
        return len(engine.tokenize(text)) + 4 * len(messages)

    def _generation_error(self, exc: Exception, prompt_tokens: int) -> ProviderError:
        text = str(exc).lower()
        if prompt_tokens >= self.n_ctx - 8 or "context" in text or "exceed" in text:
            return ContextLengthError(
                context_length_message(prompt_tokens, self.n_ctx, what="the built-in model",
                                       raise_setting="Settings → Context size (n_ctx)"),
                tokens=prompt_tokens, limit=self.n_ctx, provider=self.name)
        return ProviderError(
            f"The built-in model failed to generate ({type(exc).__name__}).", provider=self.name
        )

    def _one_candidate(
        self,
        engine: _Engine,
        messages: list[dict[str, str]],
        params: SamplingParams,
        index: int,
        seed: int,
        stop: threading.Event,
        post: Callable[[object], None],
    ) -> None:
        """One reply through llama.cpp's chat completion (the GGUF file's chat template).

        The engine calls ``on_chunk`` on this thread for every token; returning ``True``
        ends the reply (a cancel). Exceptions raised inside the callback would be swallowed
        by the binding, so the callback records failures and they are raised afterwards.
        """
        request = {
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": seed,
            "stream": True,
            "stream_options": {"include_usage": True},
            "cache_prompt": True,
        }
        reason: str | None = None
        tokens = 0
        usage: dict[str, Any] = {}
        failures: list[str] = []

        def on_chunk(chunk: Any) -> bool:
            nonlocal reason, tokens
            try:
                if not isinstance(chunk, dict):
                    failures.append(f"unexpected chunk {type(chunk).__name__}")
                    return True
                if "error" in chunk or "code" in chunk:
                    error = chunk.get("error", chunk)
                    failures.append(str(error.get("message", error) if isinstance(
                        error, dict) else error))
                    return True
                if isinstance(chunk.get("usage"), dict):
                    usage.update(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        tokens += 1
                        post(_Text(index, text))
                    if choice.get("finish_reason"):
                        reason = str(choice["finish_reason"])
            except Exception as exc:  # the binding would swallow it
                failures.append(f"{type(exc).__name__}: {exc}")
                return True
            return stop.is_set()

        server = engine.server
        if server is None:
            raise RuntimeError("the engine is closed")
        server.handle_chat_completions(request, on_chunk)
        if failures and not stop.is_set():
            raise RuntimeError(failures[0])
        if stop.is_set() and reason is None:
            reason = CANCELLED
        if reason is None:
            reason = "stop"
        if reason != CANCELLED:
            prompt_tokens = usage.get("prompt_tokens")
            completion = usage.get("completion_tokens")
            post(_Finish(index, reason,
                         prompt_tokens=int(prompt_tokens) if prompt_tokens is not None else None,
                         completion_tokens=int(completion) if completion is not None else tokens))

    async def aclose(self) -> None:
        """Free the model in its own thread and stop the worker."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_sync)
        except RuntimeError:  # executor already shut down
            pass
        self._executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        with self._load_lock:
            self._closed = True
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


async def _stop_on_set(event: asyncio.Event, stop: threading.Event) -> None:
    await event.wait()
    stop.set()
