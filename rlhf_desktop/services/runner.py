"""One background runner for the whole session (Anki's ``QueryOp``, Orange's single-worker
executor): the only place that knows the event loop and the worker threads.

A *job* is a plain function that runs in a worker thread and receives a :class:`Job`: it may
``job.report(value)`` progress and should look at ``job.cancelled`` (or hand
``job.cancel_event`` to an API that takes a :class:`threading.Event`). Its outcome comes back
on the event loop, never on the worker::

    handle = session.runner.run(
        lambda job: service.compare(folder, progress=job.report),   # worker thread
        on_success=self.show_result,                                 # event loop
        on_failure=self.show_error,                                  # event loop
        progress=self.show_progress,                                 # event loop, latest only
    )
    handle.cancel()       # sets job.cancel_event; no callback runs after this

A coroutine may ``await`` a handle instead of passing callbacks (``await runner.call(fn,
*args)``); it then gets the result or the exception, or :class:`asyncio.CancelledError` once
the handle or the runner was cancelled.

Lanes: ``lane="pool"`` (the default) shares a few worker threads for I/O and short CPU work;
any other name is a *single-worker lane*: jobs of one lane never overlap and run in the order
they were given (reward training, loading the reward model, ranking, following one child
process).

:meth:`BackgroundRunner.close` cancels every pending job and makes late completions no-ops:
after it, no callback runs, no progress is delivered, and a job that ends in its thread
finds no loop to call (a closed loop is never touched: no "no running event loop" at exit).

Without an event loop (the command line's synchronous paths, Qt-free tests that never start
one) callbacks run on the worker thread that finished the job.

Adding background work: write the blocking part as a function of a :class:`Job` in the
service (no Qt, no loop), give it to ``session.runner.run`` from the widget or the service
with callbacks that render or store the result, and pick a lane: the pool for short
independent work, a named lane when two such jobs must not overlap. Never call
``run_in_executor``, start a thread or ask asyncio for the running loop elsewhere
(tests/test_background_runner.py checks the widgets).

Where work still polls, it is because nothing fires an event: the session's watch on other
processes writing the database (lane ``watch``), a remote tuning job (lane ``remote-tune``)
and a local tune run's progress file (lane ``tune-follow``, which publishes the
``tune_did_progress`` hook; see services/tuning/service.py).

Qt-free on purpose: services use it, and ``services`` sits below ``runtime`` and ``ui`` in
the layer contract (pyproject.toml).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

POOL = "pool"
"""The shared lane (several workers)."""
POOL_WORKERS = 4

_ids = itertools.count(1)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _current_loop() -> asyncio.AbstractEventLoop | None:
    """The running loop, else the one set as this thread's current loop (a Qt slot runs
    outside qasync's ``run_until_complete`` in tests), without creating one as
    :func:`asyncio.get_event_loop` would."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_closed():
        return loop
    return None


class Job:
    """What a job's function receives in its worker thread."""

    def __init__(self, handle: Handle[Any]) -> None:
        self._handle = handle

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the job is cancelled (by its handle or by the runner's close)."""
        return self._handle.cancel_event

    @property
    def cancelled(self) -> bool:
        """Whether the job should stop: its result will be dropped."""
        return self._handle.cancel_event.is_set()

    def report(self, value: Any) -> None:
        """Send progress to the ``progress`` callback on the loop (thread-safe; only the
        latest value of a burst is delivered)."""
        self._handle._report(value)


class Handle(Generic[T]):
    """A job given to the runner: cancel it, ask whether it is done, or ``await`` it."""

    def __init__(self, runner: BackgroundRunner, name: str, lane: str,
                 on_success: Callable[[T], None] | None,
                 on_failure: Callable[[BaseException], None] | None,
                 progress: Callable[[Any], None] | None,
                 cancel: threading.Event | None) -> None:
        self.name = name or f"job {next(_ids)}"
        self.lane = lane
        self.cancel_event = cancel if cancel is not None else threading.Event()
        self._runner = runner
        self._on_success = on_success
        self._on_failure = on_failure
        self._progress = progress
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submitted: concurrent.futures.Future[None] | None = None
        self._lock = threading.Lock()
        self._latest: Any = None
        self._progress_queued = False
        self._awaited = False
        self._cancelled = False
        self._future.add_done_callback(self._future_done)

    # ------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        """Whether it succeeded, failed or was cancelled."""
        return self._future.done()

    @property
    def cancelled(self) -> bool:
        """Whether it was cancelled (by :meth:`cancel`, its awaiter or the runner's close)."""
        return self._cancelled

    def cancel(self) -> bool:
        """Cancel the job: a queued one never starts, a running one sees
        ``job.cancelled``; no callback runs afterwards. False when it had already ended."""
        with self._lock:
            if self._cancelled or (self._future.done() and not self._future.cancelled()):
                return False
            self._cancelled = True
        self.cancel_event.set()
        self._runner._forget(self)
        if self._submitted is not None:
            self._submitted.cancel()  # still queued: never starts
        self._future.cancel()
        return True

    async def wait(self) -> None:
        """Until it settles (whatever the outcome); cancelling the waiter leaves the job
        alone (``await handle`` would cancel it)."""
        if self._future.done():
            return
        waiter = asyncio.wrap_future(self._future)
        waiter.add_done_callback(_retrieve)  # its failure belongs to on_failure
        await asyncio.wait([waiter])  # a cancelled wait leaves the waiter (and job) alone

    def __await__(self) -> Generator[Any, None, T]:
        self._awaited = True
        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        state = ("cancelled" if self._cancelled else "done" if self.done else "pending")
        return f"<Handle {self.name} ({self.lane}) {state}>"

    # ------------------------------------------------------------------ internals

    def _future_done(self, future: concurrent.futures.Future[T]) -> None:
        if future.cancelled() and not self._cancelled:  # its awaiter was cancelled
            self.cancel()

    def _live(self) -> bool:
        return not self._cancelled and not self._runner.closed and not self._future.done()

    def _report(self, value: Any) -> None:
        if self._progress is None or not self._live():
            return
        with self._lock:
            self._latest = value
            if self._progress_queued:
                return
            self._progress_queued = True
        self._runner._on_loop(self._deliver_progress)

    def _deliver_progress(self) -> None:
        with self._lock:
            value, self._progress_queued = self._latest, False
        if self._progress is not None and self._live():
            self._runner._call(self._progress, value, self.name)

    def _settle(self, ok: bool, value: Any) -> None:
        """On the loop (or the worker, without one): the outcome, unless cancelled."""
        with self._lock:
            if not self._live():
                return
            if ok:
                self._future.set_result(value)
            else:
                self._future.set_exception(value)
        self._runner._forget(self)
        if ok:
            if self._on_success is not None:
                self._runner._call(self._on_success, value, self.name)
        elif self._on_failure is not None:
            self._runner._call(self._on_failure, value, self.name)
        elif not self._awaited:
            log.error("background job %s failed", self.name, exc_info=value)


class BackgroundRunner:
    """Runs jobs in worker threads and brings their outcome back to the event loop; see the
    module docstring."""

    def __init__(self, workers: int = POOL_WORKERS,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._workers = workers
        self._loop = loop
        self._executors: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._pending: set[Handle[Any]] = set()
        self._lock = threading.Lock()
        self.closed = False

    # ------------------------------------------------------------------ running

    def run(self, job: Callable[[Job], T],
            on_success: Callable[[T], None] | None = None,
            on_failure: Callable[[BaseException], None] | None = None,
            progress: Callable[[Any], None] | None = None,
            cancel: threading.Event | None = None, *,
            lane: str = POOL, name: str = "") -> Handle[T]:
        """Run ``job(Job)`` in a worker of ``lane``; ``on_success(result)`` or
        ``on_failure(exception)`` then run on the loop, ``progress(value)`` for what the job
        reports. ``cancel``: an event of the caller's to use as the job's cancel event (the
        job sees it as ``job.cancelled``; :meth:`Handle.cancel` and :meth:`close` set it).
        Setting it yourself asks the job to stop early; what the job then returns is still
        delivered. A failure nobody handles or awaits is logged. After
        :meth:`close` the handle comes back cancelled and nothing runs."""
        self._bind()
        handle: Handle[T] = Handle(self, name, lane, on_success, on_failure, progress, cancel)
        with self._lock:
            if not self.closed:
                self._pending.add(handle)
                handle._submitted = self._executor(lane).submit(self._work, job, handle)
                return handle
        handle.cancel()
        return handle

    async def call(self, fn: Callable[..., T], *args: Any, lane: str = POOL,
                   name: str = "") -> T:
        """``await`` ``fn(*args)`` run in ``lane`` (a handle cancelled with the awaiting
        task)."""
        return await self.run(lambda _job: fn(*args), lane=lane,
                              name=name or getattr(fn, "__name__", ""))

    def executor(self, lane: str) -> concurrent.futures.Executor:
        """The executor of ``lane`` for an API that takes one (``ChatService``'s ranking);
        the runner still owns it and shuts it down in :meth:`close`."""
        with self._lock:
            return self._executor(lane)

    def pending(self) -> int:
        """Jobs given and not yet settled or cancelled."""
        with self._lock:
            return len(self._pending)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Cancel every pending job, stop the workers (without waiting for a running job)
        and drop whatever completes later. Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            pending, self._pending = list(self._pending), set()
            executors = list(self._executors.values())
        for handle in pending:
            handle.cancel()
        for executor in executors:
            executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver outcomes on ``loop`` from now on (by default: the loop running, or set as
        the thread's current one, when a job is given)."""
        self._loop = loop

    def _bind(self) -> None:
        """Remember the loop of the first job (a closed one is replaced)."""
        if self._loop is not None and not self._loop.is_closed():
            return
        current = _current_loop()
        if current is not None:
            self._loop = current

    def _executor(self, lane: str) -> concurrent.futures.ThreadPoolExecutor:
        if self.closed:
            raise RuntimeError("the background runner is closed")
        executor = self._executors.get(lane)
        if executor is None:
            workers = self._workers if lane == POOL else 1
            executor = concurrent.futures.ThreadPoolExecutor(
                workers, thread_name_prefix=f"runner-{lane}")
            self._executors[lane] = executor
        return executor

    def _work(self, job: Callable[[Job], T], handle: Handle[T]) -> None:
        """In the worker thread."""
        if handle.cancel_event.is_set() or self.closed:
            return
        try:
            value: Any = job(Job(handle))
            ok = True
        except BaseException as exc:  # delivered to on_failure / the awaiter
            value, ok = exc, False
        self._on_loop(lambda: handle._settle(ok, value))

    def _on_loop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop, or here when there is none; never on a closed loop."""
        if self.closed:
            return
        loop = self._loop
        if loop is None:
            callback()
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop was closed: the session is gone, drop it
            log.debug("a late background result was dropped (its loop is closed)")

    def _forget(self, handle: Handle[Any]) -> None:
        with self._lock:
            self._pending.discard(handle)

    def _call(self, callback: Callable[[Any], None], value: Any, name: str) -> None:
        if self.closed:
            return
        try:
            callback(value)
        except Exception:  # a bad callback must not break the runner or the loop
            log.exception("a callback of background job %s failed", name)
