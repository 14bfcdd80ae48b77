"""A scripted stand-in for ``python -m rlhf_desktop.tune`` in the fast tests of the window's
tuning service: a real child process with the same command line, progress lines, signals,
checkpoint folders and exit statuses, but no torch (each step sleeps instead of training).

``TuningService(..., module="tests.scripted_tune")``. Environment: ``SCRIPTED_TUNE_STEP_S``
(seconds a step, default 0.2), ``SCRIPTED_TUNE_STEP_MARK`` (a file written with the step's
number as each step begins), ``SCRIPTED_TUNE_FAIL`` (an error message: reported after the
data stage, exit 2). A pair whose prompt is longer than ``max_length`` × 4 characters is
reported as left out, like the real data report. On completion with ``export_gguf`` a
chat-model version is registered (an adapter file that is not a real GGUF).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    from rlhf_desktop import config
    from rlhf_desktop.tune.progress import Progress

    if args.data_dir:
        config.set_data_dir(args.data_dir)
    cfg = json.loads(Path(args.config).read_text(encoding="utf-8"))
    out = Path(cfg["output_dir"])
    progress = Progress(cfg["progress_file"])
    stop = {"requested": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_signal)
    step_s = float(os.environ.get("SCRIPTED_TUNE_STEP_S", "0.2"))
    progress.emit("start", pid=os.getpid(), processes=1, torch_threads=1, config=cfg)
    progress.emit("stage", stage="base model")
    progress.emit("stage", stage="data")
    rows = [json.loads(line) for line in Path(cfg["data"]).read_text().splitlines() if line]
    limit = cfg["max_length"] * 4
    dropped = [{"line": i, "prompt_tokens": len(json.dumps(r["prompt"])) // 4,
                "chosen_tokens": 1, "rejected_tokens": 1,
                "preview": str(r["prompt"][-1]["content"])[:60]}
               for i, r in enumerate(rows, 1) if len(json.dumps(r["prompt"])) > limit]
    used = len(rows) - len(dropped)
    progress.emit("data", summary=f"{used} of {len(rows)} pairs used at max_length "
                  f"{cfg['max_length']}", file=cfg["data"], max_length=cfg["max_length"],
                  pairs=len(rows), used=used, dropped_prompt_too_long=dropped, truncated=[])
    failure = os.environ.get("SCRIPTED_TUNE_FAIL")
    if failure:
        progress.emit("error", message=failure, kind="input")
        return 2
    progress.emit("stage", stage="loading model")
    checkpoints = out / "checkpoints"
    done_steps = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    first = done_steps[-1] if done_steps else 0
    resume = str(checkpoints / f"checkpoint-{first}") if first else None
    per_step = cfg["batch_size"] * cfg["grad_accum"]
    max_steps = cfg["max_steps"] or max(1, -(-used // per_step))
    progress.emit("stage", stage="training", resume_from=resume, trainer_pairs=used)
    step = first
    mark = os.environ.get("SCRIPTED_TUNE_STEP_MARK")  # a test can see a step under way
    while step < max_steps and not stop["requested"]:
        if mark:
            Path(mark).write_text(str(step + 1), encoding="utf-8")
        time.sleep(step_s)
        step += 1
        progress.emit("step", step=step, max_steps=max_steps, loss=0.693 - 0.001 * step,
                      accuracy=0.5, margin=0.001 * step, seconds=step_s,
                      eta_s=step_s * (max_steps - step))
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True, exist_ok=True)
        progress.emit("checkpoint", step=step, path=str(checkpoints / f"checkpoint-{step}"))
    if step < max_steps:
        progress.emit("done", status="cancelled", steps=step, max_steps=max_steps)
        return 3
    fields: dict[str, object] = {"status": "completed", "steps": step, "max_steps": max_steps}
    if cfg.get("export_gguf", True):
        from rlhf_desktop.tune.versions import register

        adapter = out / "adapter.gguf"
        adapter.write_bytes(b"scripted adapter, not a GGUF file")
        version = register(adapter, {"kind": "lora", "base": {"gguf": "", "sha256": ""},
                                     "steps": step, "pairs": {"used": used}, "seconds": 1.0,
                                     "settings": {"batch_size": cfg["batch_size"],
                                                  "grad_accum": cfg["grad_accum"]}})
        (out / "version.json").write_text(json.dumps({"version": version.version,
                                                      "steps": step}))
        progress.emit("version", version=version.version, folder=str(version.folder))
        fields["version"] = version.version
    progress.emit("done", **fields)
    return 0


if __name__ == "__main__":
    sys.exit(main())
