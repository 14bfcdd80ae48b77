"""Progress as JSON lines, one object per line, flushed at once, so a window can follow it.

Events (``event`` key): ``start``, ``stage`` (what is happening now), ``data`` (the data
report), ``step`` (step, max_steps, loss, accuracy = TRL's ``rewards/accuracies``, margin =
``rewards/margins``, seconds), ``checkpoint``, ``done`` (status ``completed`` or
``cancelled``) and ``error`` (message).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any


class Progress:
    """Writes events to a file (appended) or to stdout; only one process of a run writes."""

    def __init__(self, path: str | Path | None = None, enabled: bool = True) -> None:
        self._lock = threading.Lock()
        self._enabled = enabled
        self._started = time.monotonic()
        self._file: IO[str] | None = None
        if enabled and path:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._file = target.open("a", encoding="utf-8")

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event; NaN/inf become null (JSON has neither)."""
        record = {"event": event, "time": round(time.time(), 3),
                  "elapsed_s": round(time.monotonic() - self._started, 2)}
        record.update({k: _clean(v) for k, v in fields.items()})
        if self._enabled:
            line = json.dumps(record, ensure_ascii=False) + "\n"
            with self._lock:
                out = self._file or sys.stdout
                out.write(line)
                out.flush()
        return record

    def close(self) -> None:
        """Close the file (stdout stays open)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete events written since byte ``offset``, and the offset to read from next time."""
    file = Path(path)
    if not file.exists():
        return [], offset
    with file.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # a line being written is read next time
    events = []
    for raw in data[:end].splitlines():
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            events.append(item)
    return events, offset + end
