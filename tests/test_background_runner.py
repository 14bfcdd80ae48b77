"""The background runner (services/runner.py): a job's outcome, its progress and its
cancellation come back on the event loop; a single-worker lane never overlaps its jobs; and
after close (or once the loop is gone) nothing calls back."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rlhf_desktop.services.runner import BackgroundRunner, Job

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def runner() -> Iterator[BackgroundRunner]:
    made = BackgroundRunner()
    yield made
    made.close()
    join_workers()


def join_workers() -> None:
    """Wait for every runner worker thread to end (a closed runner's workers exit once their
    job returns)."""
    for thread in threading.enumerate():
        if thread.name.startswith("runner-") and thread is not threading.current_thread():
            thread.join(timeout=30)
            assert not thread.is_alive(), thread.name


def test_success_comes_back_on_the_loop_thread(runner: BackgroundRunner) -> None:
    seen: list[tuple[Any, str]] = []

    async def main() -> None:
        done = asyncio.Event()

        def ok(value: int) -> None:
            seen.append((value, threading.current_thread().name))
            done.set()

        worker: list[str] = []

        def job(_job: Job) -> int:
            worker.append(threading.current_thread().name)
            return 6 * 7

        handle = runner.run(job, on_success=ok, on_failure=pytest.fail)
        await done.wait()
        assert handle.done and not handle.cancelled
        assert worker[0].startswith("runner-pool")
        assert await handle == 42

    asyncio.run(main())
    assert seen == [(42, threading.current_thread().name)]
    assert runner.pending() == 0


def test_failure_goes_to_on_failure_and_to_an_awaiter(runner: BackgroundRunner) -> None:
    failures: list[BaseException] = []

    def broken(_job: Job) -> None:
        raise ValueError("the file is not JSONL")

    async def main() -> None:
        done = asyncio.Event()

        def failed(exc: BaseException) -> None:
            failures.append(exc)
            done.set()

        runner.run(broken, on_success=lambda _v: pytest.fail("no success"), on_failure=failed)
        await done.wait()
        with pytest.raises(ValueError, match="not JSONL"):
            await runner.run(broken)

    asyncio.run(main())
    assert [str(e) for e in failures] == ["the file is not JSONL"]


def test_an_unhandled_failure_is_logged(runner: BackgroundRunner,
                                        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        handle = runner.run(lambda _job: 1 / 0, name="divide")
        while not handle.done:
            await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="rlhf_desktop.services.runner"):
        asyncio.run(main())
    assert any("divide failed" in r.getMessage() for r in caplog.records)


def test_progress_reaches_the_loop_before_the_result(runner: BackgroundRunner) -> None:
    events: list[tuple[str, Any]] = []

    async def main() -> None:
        delivered = threading.Event()
        finished = asyncio.Event()

        def job(job: Job) -> str:
            job.report(0.5)
            assert delivered.wait(20), "progress never reached the loop"
            job.report(1.0)
            return "trained"

        def progress(value: Any) -> None:
            events.append(("progress", value))
            delivered.set()

        def ok(value: str) -> None:
            events.append(("success", value))
            finished.set()

        runner.run(job, on_success=ok, progress=progress)
        await finished.wait()

    asyncio.run(main())
    assert events[0] == ("progress", 0.5)
    assert events[-1] == ("success", "trained")
    assert all(kind == "progress" for kind, _ in events[:-1])


def test_cancel_stops_a_running_job_and_no_callback_runs(runner: BackgroundRunner) -> None:
    called: list[str] = []
    stopped = threading.Event()

    async def main() -> None:
        started = threading.Event()

        def job(job: Job) -> str:
            started.set()
            job.cancel_event.wait(20)
            job.report("late progress")
            stopped.set()
            return "late result"

        handle = runner.run(job, on_success=lambda v: called.append(v),
                            on_failure=lambda e: called.append(repr(e)),
                            progress=lambda v: called.append(v), lane="compare")
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 20)
        assert handle.cancel()
        assert handle.cancelled and handle.done
        with pytest.raises(asyncio.CancelledError):
            await handle
        # the lane is serial: once the next job's result is back, whatever the cancelled
        # job queued on the loop has run
        await runner.run(lambda _job: None, lane="compare")

    asyncio.run(main())
    assert stopped.is_set()
    assert called == []
    assert runner.pending() == 0


def test_a_callers_cancel_event_cancels_the_job(runner: BackgroundRunner) -> None:
    stop = threading.Event()

    async def main() -> None:
        handle = runner.run(lambda job: job.cancel_event.wait(20) and job.cancelled,
                            cancel=stop)
        stop.set()  # e.g. the tune process's "stop after this step"
        assert await handle is True

    asyncio.run(main())


def test_a_single_worker_lane_runs_its_jobs_one_at_a_time_in_order(
        runner: BackgroundRunner) -> None:
    order: list[str] = []
    running = 0
    most = 0
    lock = threading.Lock()
    first_started = threading.Event()
    release = threading.Event()

    def job(name: str) -> Any:
        def work(_job: Job) -> str:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
                order.append(f"start {name}")
            if name == "a":
                first_started.set()
                release.wait(20)
            with lock:
                order.append(f"end {name}")
                running -= 1
            return name
        return work

    async def main() -> list[str]:
        handles = [runner.run(job(n), lane="train") for n in "abc"]
        await asyncio.get_running_loop().run_in_executor(None, first_started.wait, 20)
        assert not handles[1].done  # b waits for a, though pool workers are free
        release.set()
        return [await h for h in handles]

    assert asyncio.run(main()) == ["a", "b", "c"]
    assert most == 1
    assert order == ["start a", "end a", "start b", "end b", "start c", "end c"]


def test_cancelling_a_queued_job_means_it_never_starts(runner: BackgroundRunner) -> None:
    ran: list[str] = []
    release = threading.Event()

    async def main() -> None:
        first = runner.run(lambda _job: release.wait(20), lane="load")
        second = runner.run(lambda _job: ran.append("second"), lane="load")
        assert second.cancel()
        release.set()
        await first

    asyncio.run(main())
    assert ran == []


def test_close_cancels_pending_work_and_drops_late_completions(
        caplog: pytest.LogCaptureFixture) -> None:
    runner = BackgroundRunner()
    called: list[Any] = []
    release = threading.Event()
    started = threading.Event()
    queued_ran = threading.Event()

    def stubborn(job: Job) -> str:  # ignores cancel: it just finishes late
        started.set()
        release.wait(20)
        job.report("late")
        return "late"

    async def main() -> None:
        running = runner.run(stubborn, on_success=called.append, on_failure=called.append,
                             progress=called.append, lane="train")
        queued = runner.run(lambda _job: queued_ran.set(), on_success=called.append,
                            lane="train")
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 20)
        runner.close()
        assert running.cancelled and queued.cancelled and runner.pending() == 0
        after = runner.run(lambda _job: called.append("after close"),
                           on_success=called.append)
        assert after.cancelled
        release.set()
        join_workers()
        for _ in range(5):
            await asyncio.sleep(0)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    assert called == []
    assert not queued_ran.is_set()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_job_that_ends_after_its_loop_closed_calls_nothing(
        runner: BackgroundRunner, caplog: pytest.LogCaptureFixture) -> None:
    """The loop of a window test closes while a job still runs (nobody closed the runner):
    the late result is dropped, and nothing touches the closed loop."""
    called: list[Any] = []
    release = threading.Event()

    async def main() -> None:
        runner.run(lambda _job: release.wait(20), on_success=called.append,
                   on_failure=called.append, lane="late")

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())  # closes its loop with the job still running
        release.set()
        runner.executor("late").submit(lambda: None).result(timeout=30)  # the lane is serial
    assert called == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_without_a_loop_callbacks_run_on_the_worker(runner: BackgroundRunner) -> None:
    """The command line's synchronous paths and Qt-free tests start no loop."""
    got: list[tuple[int, bool]] = []
    done = threading.Event()

    def ok(value: int) -> None:
        got.append((value, threading.current_thread() is threading.main_thread()))
        done.set()

    runner.run(lambda _job: 7, on_success=ok)
    assert done.wait(20)
    assert got == [(7, False)]


def test_waiting_for_a_handle_does_not_cancel_it(runner: BackgroundRunner) -> None:
    """The retrainer waits for its run this way: a waiter that gives up leaves the job be."""
    release = threading.Event()

    async def main() -> str:
        handle = runner.run(lambda _job: release.wait(20) and "trained")
        waiter = asyncio.ensure_future(handle.wait())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not handle.cancelled
        release.set()
        await handle.wait()
        assert handle.done and not handle.cancelled
        return await handle

    assert asyncio.run(main()) == "trained"


def test_a_job_given_outside_the_running_loop_still_calls_back_on_the_current_loop() -> None:
    """A Qt slot may run while qasync's loop is set but not running (window tests click
    between runs): the outcome still waits for that loop, never runs on the worker."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = BackgroundRunner()
    try:
        got: list[bool] = []
        handle = runner.run(lambda _job: 1, on_success=lambda _v: got.append(
            threading.current_thread() is threading.main_thread()))

        async def settled() -> None:
            await handle.wait()

        loop.run_until_complete(settled())
        loop.run_until_complete(asyncio.sleep(0))
        assert got == [True]
    finally:
        runner.close()
        asyncio.set_event_loop(None)
        loop.close()


def test_widgets_run_background_work_only_through_the_runner() -> None:
    """No widget reaches for an executor or a thread of its own: ``run_in_executor``,
    ``ThreadPoolExecutor`` and ``threading.Thread`` appear nowhere under rlhf_desktop/ui."""
    from pathlib import Path

    import rlhf_desktop.ui

    root = Path(rlhf_desktop.ui.__file__).parent
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}"
             for path in sorted(root.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if any(word in line for word in ("run_in_executor", "ThreadPoolExecutor",
                                               "threading.Thread"))]
    assert found == []


def test_the_leaderboard_stepped_outside_the_running_loop_waits_for_its_job() -> None:
    """A window test once logged ``RuntimeError: no running event loop`` from the model
    page's leaderboard: Qt stepped its task while qasync's loop was set but not running, and
    ``ModelService.leaderboard`` asked asyncio for the running loop. Through the runner it
    suspends on the job instead, and finishes on the loop."""
    from rlhf_desktop.services.hooks import SessionHooks
    from rlhf_desktop.services.labels.labeling import LabelingService
    from rlhf_desktop.services.ranking.models import ModelService
    from rlhf_desktop.services.ranking.retraining import Retrainer
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.storage.repo import Repository
    from tests.fakes import HashEmbedder

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    repo = Repository.open()
    rewards = RewardService(embedder=HashEmbedder())  # type: ignore[arg-type]
    retrainer = Retrainer(repo, rewards)
    models = ModelService(repo, retrainer, rewards, SessionHooks(), LabelingService(repo))
    step = models.leaderboard()
    try:
        waiting = step.send(None)  # one step of its task, no loop running
        loop.run_until_complete(waiting)
        with pytest.raises(StopIteration) as finished:
            step.send(None)
        board = finished.value.value
        assert board.standings == []  # no arena turns labeled yet
    finally:
        step.close()
        retrainer.shutdown()
        repo.close()
        asyncio.set_event_loop(None)
        loop.close()
