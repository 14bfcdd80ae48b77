"""``python -m rlhf_desktop`` and the ``rlhf-desktop`` script: a command, or the window."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run a CLI command (or ``--self-test``); with none, open the main window."""
    from rlhf_desktop import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    args = cli.build_parser().parse_args(argv)
    if getattr(args, "self_test", False):
        return _self_test()
    if args.command is not None:
        return cli.run(args)
    try:
        app = importlib.import_module("rlhf_desktop.app")
    except ImportError as exc:  # the window has not landed, or PySide6 is missing
        print(f"The window is not available ({exc}); commands:\n", file=sys.stderr)
        cli.build_parser().print_help()
        return 0
    return int(app.main(argv))


def _self_test() -> int:
    """``--self-test``: the window check needs app.py (and PySide6); it is a failure without."""
    try:
        app = importlib.import_module("rlhf_desktop.app")
    except ImportError as exc:
        print(f"self-test FAILED at qt: the window cannot load ({exc})", file=sys.stderr)
        return 1
    return int(app.self_test())


if __name__ == "__main__":
    sys.exit(main())
