"""A 10 ms Qt timer that measures event-loop stalls (the gaps between its ticks).

Used by the UI tests (held under 100 ms) and by ``benchmarks/app_perf.py`` (target 50 ms).
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer


class Heartbeat:
    """Records the gaps between ticks of a precise timer; a stall shows as a long gap."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last: float | None = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def start(self) -> None:
        """Start a new measurement."""
        self.gaps, self._last = [], None
        self.timer.start()

    def stop(self) -> dict[str, float]:
        """Stop; the longest and 99th-percentile gap in ms, and the tick count."""
        self.timer.stop()
        return {"max_ms": self.max_gap_ms, "p99_ms": self.p99_ms, "ticks": len(self.gaps)}

    @property
    def max_gap_ms(self) -> float:
        """The longest gap between two ticks."""
        return max(self.gaps, default=0.0) * 1000

    @property
    def p99_ms(self) -> float:
        """The 99th-percentile gap."""
        ordered = sorted(self.gaps) or [0.0]
        return 1000 * ordered[max(0, int(len(ordered) * 0.99) - 1)]

    def summary(self) -> str:
        """Ticks, max and 99th-percentile gap."""
        if not self.gaps:
            return "no ticks"
        return (f"{len(self.gaps)} ticks, max gap {self.max_gap_ms:.0f} ms, "
                f"p99 {self.p99_ms:.0f} ms")
