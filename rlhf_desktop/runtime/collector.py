"""Run Python's cyclic garbage collector on the GUI thread only.

Python collects reference cycles in whichever thread happens to allocate when a threshold
is crossed: in this app often the training, ranking or llama.cpp worker. A cycle that holds
a Qt object (a widget and a lambda connected to it, say) is then destroyed on that worker
thread while the GUI thread may still deliver a timer or paint event to it; Qt requires
objects to die on the thread they live in. Measured symptom: one UI test run in four ended
in a segmentation fault in ``QTimerInfoList::activateTimers`` while a worker thread ran.

:class:`MainThreadCollector` turns the automatic collector off and, from a timer on the
GUI thread, runs the same generational collections when the same thresholds are crossed
(the pattern PyQt applications have long used). Workers still free everything that is not
in a cycle at once, by reference counting.
"""

from __future__ import annotations

import gc
import logging
import time

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)

INTERVAL_MS = 250


class MainThreadCollector(QObject):
    """Owns ``gc`` while it exists: automatic collection off, timed collections on."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.collections = [0, 0, 0]
        self.longest_ms = 0.0
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> int | None:
        """Collect the oldest generation whose threshold is crossed; returns it (or None)."""
        thresholds, counts = gc.get_threshold(), gc.get_count()
        generation = None
        for gen in (2, 1, 0):
            if counts[gen] > thresholds[gen]:
                generation = gen
                break
        if generation is None:
            return None
        started = time.perf_counter()
        gc.collect(generation)
        elapsed = (time.perf_counter() - started) * 1000
        self.collections[generation] += 1
        self.longest_ms = max(self.longest_ms, elapsed)
        if elapsed > 50:
            log.debug("generation %d collection took %.0f ms", generation, elapsed)
        return generation

    def stop(self) -> None:
        """Give the collector back to Python (automatic again if it was before)."""
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
