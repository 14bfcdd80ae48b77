"""Keep the event loop responsive while heavy libraries load in a worker thread.

The window never imports torch on its own any more (the embedder runs on numpy), so start-up
does not pre-map torch: that alone cost tens of MiB of resident memory. The helper stays for
the processes that do import torch (the tune benchmarks, the UI tests that load it).

Python 3.11 holds the GIL while ``import`` maps an extension module (``dlopen``), so the
first ``import torch`` in a worker thread froze the window's loop for ~0.3 s (measured: one
285 ms gap of a 10 ms heartbeat). Calling libc's ``dlopen`` through ctypes releases the GIL
for the call, so mapping torch's big shared libraries that way first leaves only cheap work
for the real import. Best effort: any failure is ignored and the normal import runs.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

UI_SWITCH_INTERVAL_S = 0.001

_TORCH_LIBS = ("libgomp.so.1", "libc10.so", "libtorch_cpu.so", "libtorch.so", "libshm.so",
               "libtorch_python.so")
_done = False


def torch_lib_dir() -> Path | None:
    """torch's ``lib`` folder, found without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return folder if folder.is_dir() else None


def preload_torch_libraries() -> int:
    """Map torch's shared libraries with the GIL released (Linux only). Returns how many."""
    global _done
    if _done or not sys.platform.startswith("linux") or "torch" in sys.modules:
        return 0
    _done = True
    folder = torch_lib_dir()
    if folder is None:
        return 0
    try:
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    except (OSError, AttributeError):
        return 0
    rtld_now_global = 0x2 | 0x100
    loaded = 0
    for name in _TORCH_LIBS:
        path = folder / name
        if path.exists() and dlopen(str(path).encode(), rtld_now_global):
            loaded += 1
    log.debug("pre-mapped %d torch libraries", loaded)
    return loaded


def tune_gil_for_ui() -> None:
    """Let the UI thread get the GIL back within ~1 ms instead of 5 ms.

    While a worker thread runs Python code (training, scoring), every time the UI thread
    gives up the GIL (most Qt calls do) it waits up to the switch interval to get it back;
    a repaint with dozens of such hand-overs then stalls for tens of milliseconds.
    """
    if sys.getswitchinterval() > UI_SWITCH_INTERVAL_S:
        sys.setswitchinterval(UI_SWITCH_INTERVAL_S)


def freeze_startup_objects() -> int:
    """Move every object alive after start-up into the collector's permanent generation.

    A full collection holds the GIL while it walks every tracked object, so one triggered by
    a worker (training on 10k pairs allocates ~100k objects) stalled the window for ~170 ms
    with ~350k objects alive (``benchmarks/app_perf.py``). Objects that exist once the
    libraries and the reward model are loaded live as long as the app, so later collections
    need not walk them. Returns how many objects were frozen.
    """
    gc.freeze()
    return gc.get_freeze_count()


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

    Loading the embedder and the reward model frees tens of MiB of temporary buffers that
    glibc keeps in its arenas for reuse, so an idle window would go on counting them in its
    resident memory (about 7 MiB here, ``benchmarks/app_perf.py``). Cheap (a few ms), and
    only worth calling after such a one-off burst. False where there is no glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and others: nothing to trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
