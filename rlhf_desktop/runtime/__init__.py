"""Process helpers of the desktop app, below the widgets and beside the composition roots.

* :mod:`.collector` — cyclic garbage collection on the GUI thread only (Qt objects in
  reference cycles must die on their own thread);
* :mod:`.warmup` — GIL switch interval for a responsive UI, start-up objects frozen out of
  later collections, the C heap's free pages given back once the models are loaded,
  torch's libraries mapped without the GIL (for processes that import it);
* :mod:`.heartbeat` — a 10 ms timer that measures event-loop stalls (benchmarks);
* :mod:`.compat` — a guard against PySide6 builds that lose references to ``None``.

These may use Qt (``collector``, ``heartbeat``, ``compat``); they never import widgets.
"""
