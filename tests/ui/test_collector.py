"""Cycles dropped by worker threads are collected on the GUI thread."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import ClassVar

from rlhf_desktop.runtime.collector import MainThreadCollector
from tests.ui.conftest import run, wait_until


class Tracked:
    """Part of a reference cycle; records the thread that finalises it."""

    died_on: ClassVar[list[int]] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        Tracked.died_on.append(threading.get_ident())


CYCLES = 2000  # past the first generation's threshold (700 by default)


def drop_cycles_and_allocate() -> None:
    """What a worker does: allocates, and lets go of objects that sit in cycles."""
    for _ in range(CYCLES):
        Tracked()


def test_worker_garbage_is_collected_on_the_gui_thread(
        loop: asyncio.AbstractEventLoop, main_thread_collector: MainThreadCollector) -> None:
    assert not gc.isenabled()
    gc.collect()
    Tracked.died_on.clear()
    worker = threading.Thread(target=drop_cycles_and_allocate)
    worker.start()
    worker.join()
    assert Tracked.died_on == []  # the worker's allocations collected nothing
    run(loop, wait_until(lambda: len(Tracked.died_on) == CYCLES, 10, "the timed collection"))
    assert set(Tracked.died_on) == {threading.get_ident()}


def test_without_the_collector_a_worker_collects_them(
        main_thread_collector: MainThreadCollector) -> None:
    """The failure the collector prevents (the control for the test above)."""
    gc.collect()
    Tracked.died_on.clear()
    gc.enable()
    try:
        worker = threading.Thread(target=drop_cycles_and_allocate)
        worker.start()
        worker.join()
    finally:
        gc.disable()
    assert Tracked.died_on and threading.get_ident() not in Tracked.died_on
