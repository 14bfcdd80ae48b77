"""The PyInstaller entry point: the same ``main`` as the ``rlhf-desktop`` script."""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # joblib/torch may start worker processes
    from rlhf_desktop.__main__ import main

    sys.exit(main())
