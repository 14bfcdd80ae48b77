"""``python -m rlhf_desktop.tune --config FILE`` (also under ``accelerate launch … -m``).

Exit status: 0 completed, 2 bad config or data (one line on stderr, and an ``error``
event), 3 cancelled (the last checkpoint is kept; run again to resume), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    """The module's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m rlhf_desktop.tune",
        description="DPO fine-tuning (LoRA) of a chat model, or a reward model "
                    "(method: reward), on preference pairs.")
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="JSON or YAML settings (see rlhf_desktop/tune/options.py)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (value parsed as JSON, else text)")
    parser.add_argument("--nice", type=int, default=0,
                        help="lower this process's priority by N (0-19) first")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the app's data folder, where chat-model versions are saved")
    return parser


def _overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, train, convert; never raises."""
    args = build_parser().parse_args(argv)
    if args.nice:
        os.nice(max(0, min(args.nice, 19)))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rlhf_desktop import config as app_config
    from rlhf_desktop.tune.options import TuneConfigError, load_config
    from rlhf_desktop.tune.pipeline import tune
    from rlhf_desktop.tune.progress import Progress
    from rlhf_desktop.tune.train import StopRequest

    if args.data_dir:
        app_config.set_data_dir(args.data_dir)
    try:
        cfg = load_config(args.config, _overrides(args.set))
    except TuneConfigError as exc:
        print(f"rlhf_desktop.tune: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stop = StopRequest()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.requested:  # a second request: stop now (the previous checkpoint stays)
            raise KeyboardInterrupt
        stop.request()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)
    progress = Progress(cfg.progress_file or None, enabled=rank == 0)
    try:
        result = tune(cfg, progress, stop)
    except TuneConfigError as exc:
        progress.emit("error", message=str(exc), kind="input")
        print(f"rlhf_desktop.tune: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        progress.emit("done", status="cancelled", note="stopped during a step; the previous "
                      "checkpoint is kept")
        return EXIT_CANCELLED
    except Exception as exc:
        logging.getLogger(__name__).exception("tuning failed")
        progress.emit("error", message=f"{type(exc).__name__}: {exc}", kind="internal")
        return EXIT_FAILED
    finally:
        progress.close()
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
