"""The built-in offline model: a GGUF file run by llama-cpp-python in one worker thread.

``llama_cpp`` is imported only when the model is first loaded (in the worker thread), so
importing this module costs nothing and the window starts fast. llama.cpp is not safe to
use from two threads at once, so loading and every generation run on a single dedicated
thread; the N candidates are generated one after another with seeds ``base + i`` and their
tokens are handed to the event loop with ``call_soon_threadsafe``. A cancel is checked
between tokens.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers.base import (
    CANCELLED,
    ERROR,
    BaseProvider,
    CandidateTracker,
    StreamEvent,
    build_messages,
)
from rlhf_desktop.providers.errors import ModelLoadError, ProviderError

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


class LocalProvider(BaseProvider):
    """llama-cpp-python on a local GGUF file (SmolLM2-135M-Instruct by default).

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
        self._llm: Any = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llama"
        )
        self.load_seconds: float | None = None
        self.wake_interval_s = 0.03
        """Text reaches the event loop in batches at most this often (about 30 per s)."""

    def describe(self) -> str:
        """``Built-in model: <file name> [+ tuned vNNNN] (n threads)``."""
        tuned = f" + tuned {self.lora_path.parent.name}" if self.lora_path else ""
        return f"Built-in model: {self.model_path.name}{tuned} ({self.n_threads} thread(s))"

    async def load(self) -> None:
        """Load the model in the worker thread (idempotent)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_sync)

    def _load_sync(self) -> Any:
        if self._llm is not None:
            return self._llm
        if not self.model_path.is_file():
            raise ModelLoadError(
                f"The built-in model file {self.model_path} does not exist. Set gguf_path to "
                "a GGUF file, or run `make run` to install the default model.",
                provider=self.name,
            )
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelLoadError(
                "llama-cpp-python is not installed, so the built-in model cannot run. Run "
                "`make setup`, or configure Azure OpenAI or OpenAI in .env.",
                provider=self.name,
            ) from exc
        started = time.perf_counter()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(self.model_path),
                lora_path=str(self.lora_path) if self.lora_path else None,
                n_threads=self.n_threads,
                # llama-cpp-python defaults prompt processing to every core; on a busy
                # machine that made a 40-token prompt take 15 s instead of 0.4 s.
                n_threads_batch=self.n_threads,
                n_ctx=self.n_ctx,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"Could not load {self.model_path.name} as a GGUF model ({type(exc).__name__}). "
                "Set gguf_path to a valid GGUF file.",
                provider=self.name,
            ) from exc
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s in %.2f s (%d thread(s), n_ctx=%d)", self.model_path.name,
                 self.load_seconds, self.n_threads, self.n_ctx)
        return self._llm

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
            llm = self._load_sync()
            prompt_tokens = self._prompt_estimate(llm, messages)
            for i in range(n):
                if stop.is_set():
                    break
                try:
                    if prompt_tokens >= self.n_ctx - 1:
                        raise ValueError("the prompt does not fit the context window")
                    self._one_candidate(llm, messages, params, i, seed_base + i, stop, post)
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
    def _prompt_estimate(llm: Any, messages: list[dict[str, str]]) -> int:
        """Tokens of the message texts plus a few per message for the chat template."""
        text = "\n".join(m["content"] for m in messages)
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False)) + 4 * len(messages)

    def _generation_error(self, exc: Exception, prompt_tokens: int) -> ProviderError:
        text = str(exc).lower()
        if prompt_tokens >= self.n_ctx - 8 or "context" in text or "exceed" in text:
            return ProviderError(
                f"The conversation is too long for the built-in model (about {prompt_tokens} "
                f"tokens, n_ctx={self.n_ctx}). Start a new chat, or raise n_ctx in Settings.",
                provider=self.name,
            )
        return ProviderError(
            f"The built-in model failed to generate ({type(exc).__name__}).", provider=self.name
        )

    def _one_candidate(
        self,
        llm: Any,
        messages: list[dict[str, str]],
        params: SamplingParams,
        index: int,
        seed: int,
        stop: threading.Event,
        post: Callable[[object], None],
    ) -> None:
        chunks = llm.create_chat_completion(
            messages=messages,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=seed,
            stream=True,
        )
        reason: str | None = None
        tokens = 0
        prompt_tokens: int | None = None
        try:
            for chunk in chunks:
                if prompt_tokens is None:
                    prompt_tokens = int(llm.n_tokens)  # the prompt, evaluated before token 1
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    tokens += 1
                    post(_Text(index, text))
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
                if stop.is_set():
                    break
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if reason is None:
            reason = CANCELLED if stop.is_set() else "stop"
        if reason != CANCELLED:
            post(_Finish(index, reason, prompt_tokens=prompt_tokens, completion_tokens=tokens))

    async def aclose(self) -> None:
        """Free the model in its own thread and stop the worker."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_sync)
        except RuntimeError:  # executor already shut down
            pass
        self._executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            close = getattr(llm, "close", None)
            if close is not None:
                close()


async def _stop_on_set(event: asyncio.Event, stop: threading.Event) -> None:
    await event.wait()
    stop.set()
