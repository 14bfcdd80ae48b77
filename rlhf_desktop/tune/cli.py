"""``rlhf-desktop tune``: DPO on the data folder's pairs in a separate low-priority process.

``cli.py`` adds it with ``add_tune_parser(sub)`` and dispatches ``"tune": run_tune``. The
command exports the stored pairs (``trl-conversational``) into a new run folder
``<data>/tune-runs/<time>/``, starts ``python -m rlhf_desktop.tune`` there at nice 19, and
prints its progress. Ctrl+C stops after the current step and keeps the checkpoint;
``--resume`` continues the newest run from it. The result is a chat-model version
(``chat_models/vNNNN``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from rlhf_desktop.tune.options import TuneConfig, TuneConfigError
from rlhf_desktop.tune.process import EXIT_MEANING, TuneProcess
from rlhf_desktop.tune.runs import PAIRS_FILE, RUNS_DIR, new_config, resume_config

__all__ = ["PAIRS_FILE", "RUNS_DIR", "add_tune_parser", "missing_packages", "run_tune"]
_FLAGS = ("max_steps", "epochs", "max_length", "learning_rate", "beta", "threads",
          "lora_r", "batch_size", "grad_accum", "seed")


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``tune`` to the CLI's sub-parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "tune", help="fine-tune the built-in chat model on the stored pairs (DPO with LoRA, "
                     "in a separate low-priority process)")
    p.add_argument("--config", metavar="FILE",
                   help="settings (JSON or YAML, see docs/scale-out.md); flags override it")
    p.add_argument("--max-steps", type=int, help="optimizer steps (default: one epoch)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-length", type=int, help="tokens per prompt + reply")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--beta", type=float)
    p.add_argument("--lora-r", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--threads", type=int, help="torch threads in the tuning process")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true",
                   help="continue the newest run from its last checkpoint")
    p.add_argument("--list", action="store_true", help="list the chat-model versions")
    p.add_argument("--nice", type=int, default=19, help="priority of the tuning process "
                   "(0-19, default 19: lowest)")
    p.add_argument("--json", action="store_true", help="print the progress events as JSON lines")
    r = p.add_argument_group("remote DPO job on Azure OpenAI or OpenAI (the configured account)")
    r.add_argument("--remote", action="store_true",
                   help="upload the pairs (openai-dpo) and start a DPO fine-tuning job; with "
                        "--list: list the recorded remote jobs")
    r.add_argument("--model", help="the base model to tune, e.g. gpt-4o-mini-2024-07-18")
    r.add_argument("--yes", action="store_true",
                   help="confirm sending the pairs without asking (for scripts)")
    r.add_argument("--no-wait", action="store_true", help="start the job and return")
    r.add_argument("--status", metavar="JOB_ID", help="show a remote job's status")
    r.add_argument("--cancel", metavar="JOB_ID", help="cancel a remote job")
    r.add_argument("--poll-interval", type=float, default=15.0, metavar="SECONDS",
                   help="seconds between status checks (default 15)")
    return p


def _error(message: str) -> int:
    print(f"rlhf-desktop: error: {message}", file=sys.stderr)
    return 2


def missing_packages() -> list[str]:
    """The ``tune`` extra's packages that are not installed."""
    return [name for name in ("trl", "peft", "transformers", "accelerate", "datasets")
            if importlib.util.find_spec(name) is None]


def run_tune(args: argparse.Namespace) -> int:
    """The command (0 done, 2 error, 3 cancelled)."""
    from rlhf_desktop import config

    if getattr(args, "remote", False):
        from rlhf_desktop.tune.remote import run_remote

        return run_remote(args)
    if args.list:
        return _list(args)
    missing = missing_packages()
    if missing:
        return _error(f"tuning needs the 'tune' extra ({', '.join(missing)} missing): "
                      f"pip install -e '.[tune]'")
    runs = config.data_dir() / RUNS_DIR
    try:
        cfg = _resume_config(runs, args) if args.resume else _new_config(args, runs)
    except TuneConfigError as exc:
        return _error(str(exc))
    process = TuneProcess(cfg, nice=args.nice, data_dir=str(config.data_dir()))
    process.start()
    print(f"tuning in process {process.pid} (nice {args.nice}); run folder {process.run_dir}",
          file=sys.stderr)
    code = _follow(process, args.json)
    if code == 0:
        done = process.last_events.get("done", {})
        if "version" in done and not args.json:  # JSON mode: the done event says it
            print(f"chat model v{done['version']} saved in {done['version_dir']}")
    elif code == 3:
        print(f"cancelled; the checkpoint is kept: `rlhf-desktop tune --resume` continues "
              f"from it ({process.run_dir})", file=sys.stderr)
    elif code != 2 or "error" not in process.last_events:
        print(f"rlhf-desktop: tuning {EXIT_MEANING.get(code, 'failed')} (exit {code}); "
              f"log: {process.log_path}\n{process.log_tail(8)}", file=sys.stderr)
    return code


def _new_config(args: argparse.Namespace, runs: Path) -> TuneConfig:
    from rlhf_desktop import config

    overrides: dict[str, Any] = {k: getattr(args, k) for k in _FLAGS
                                 if getattr(args, k, None) is not None}
    return new_config(runs, overrides, args.config,
                      "" if args.config else config.load_settings().system_prompt)


def _resume_config(runs: Path, args: argparse.Namespace) -> TuneConfig:
    """The newest run's settings (same pairs file); --max-steps/--epochs may extend it."""
    return resume_config(runs, {k: getattr(args, k) for k in ("max_steps", "epochs")
                                if getattr(args, k, None) is not None})


def _follow(process: TuneProcess, as_json: bool) -> int:
    cancelling = False
    while True:
        try:
            for event in process.events():
                _print_event(event, as_json)
            code = process.poll()
            if code is not None:
                for event in process.events():
                    _print_event(event, as_json)
                process.wait()
                return code
            time.sleep(0.5)
        except KeyboardInterrupt:
            if cancelling:
                process.kill()
            else:
                cancelling = True
                process.cancel()
                print("\nstopping after the current step (Ctrl+C again to stop now)",
                      file=sys.stderr)


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event, ensure_ascii=False), flush=True)
        return
    kind = event.get("event")
    if kind == "stage":
        print(f"… {event.get('stage')}", file=sys.stderr)
    elif kind == "data":
        print(event.get("summary", ""), file=sys.stderr)
    elif kind == "step":
        def num(key: str, fmt: str) -> str:
            value = event.get(key)
            return "n/a" if value is None else format(value, fmt)

        print(f"step {event.get('step')}/{event.get('max_steps')}  loss {num('loss', '.4f')}  "
              f"reward accuracy {num('accuracy', '.2f')}  margin {num('margin', '+.4f')}  "
              f"{num('seconds', '.0f')} s/step  eta {num('eta_s', '.0f')} s", file=sys.stderr)
    elif kind == "error":
        print(f"rlhf-desktop: error: {event.get('message')}", file=sys.stderr)


def _list(args: argparse.Namespace) -> int:
    from rlhf_desktop.tune.versions import list_versions

    versions = list_versions()
    if args.json:
        print(json.dumps([{"version": v.version, "folder": str(v.folder), **v.manifest}
                          for v in versions], ensure_ascii=False))
        return 0
    print("v0     the base model (built-in GGUF, untuned)")
    for v in versions:
        m = v.manifest
        acc = (m.get("metrics") or {}).get("accuracy")
        acc_text = "" if acc is None else f" · last reward accuracy {acc:.2f}"
        print(f"v{v.version:<5} {m.get('created_at', '')} · {m.get('pairs', {}).get('used')} "
              f"pairs · {m.get('steps')} step{'' if m.get('steps') == 1 else 's'}{acc_text}")
    return 0
