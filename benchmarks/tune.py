"""Local DPO tuning speed: seconds per optimizer step and per pair, and peak RSS, for the
defaults and for the levers (max_length, LoRA targets, gradient checkpointing, precomputed
reference log-probs, torch threads).

Each configuration is one real run of ``python -m rlhf_desktop.tune`` (SmolLM2-135M from the
shipped GGUF, TRL DPOTrainer, LoRA) in its own process on the same real HH pairs; the step
time is the median of the steps after the first (the first one warms up), the peak RSS is
the child's (``wait4``). The machine's load average is recorded beside every figure, because
other jobs share its cores.

    .venv/bin/python -m benchmarks.tune [--steps 3] [--only NAME ...] [--nice 19] [--append]

Writes ``benchmarks/results/tune.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import write_json

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT.parent / "shared" / "data" / "hh-harmless-dev.jsonl"
COMMAND = ".venv/bin/python -m benchmarks.tune"

BASE: dict[str, Any] = {"batch_size": 2, "grad_accum": 2, "export_gguf": False}
# "defaults": max_length 256, LoRA r 16 on q/v, fp32, no gradient checkpointing, 2 threads
# (the run's default before threads became half the cores: 1 here); each other line changes
# one thing.
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "max_length 512": {"max_length": 512},
    "max_length 128": {"max_length": 128},
    "LoRA on all 7 linear layers": {"lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"]},
    "gradient checkpointing (TRL's default)": {"gradient_checkpointing": True},
    "precompute_ref_log_probs": {"precompute_ref_log_probs": True},
    "1 torch thread": {"threads": 1},
    "bf16 mixed precision": {"bf16": True},
    "bf16, 1 torch thread": {"bf16": True, "threads": 1},
    # The same levers at 1 thread: with 2 threads on a shared machine, OpenMP's waiting
    # threads burn CPU time, so CPU s/pair is only comparable between 1-thread runs.
    "1 thread, max_length 512": {"threads": 1, "max_length": 512},
    "1 thread, gradient checkpointing": {"threads": 1, "gradient_checkpointing": True},
    "1 thread, LoRA on all 7 linear layers": {"threads": 1, "lora_targets": [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
}
ALL_7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The loop benchmark's recipe (LoRA on all 7 layers, 8 pairs a step), run on the app's own
# on-policy pairs (``--data``: a taste's exported pairs.jsonl in the loop's work folder):
# how the 8 pairs are split into micro-batches (the same 8 pairs a step, the same loss:
# only the padding between pairs differs) and how many torch threads, on an idle machine.
CONFIGS.update({
    f"recipe, {threads} thread{'s' if threads > 1 else ''}, {bs} × {ga} pairs":
        {"lora_targets": ALL_7, "threads": threads, "batch_size": bs, "grad_accum": ga}
    for threads in (1, 2) for bs, ga in ((2, 4), (1, 8))})


def data_name(data: Path, pairs: int) -> str:
    """``first 64 pairs of hh-harmless-dev.jsonl``; a loop taste's pairs by their folder."""
    where = data.name if data == HH else f"{data.parent.name}/{data.name}"
    return f"first {pairs} pairs of {where}"


def load() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def run_one(name: str, settings: dict[str, Any], pairs: Path, steps: int, nice: int,
            work: Path) -> dict[str, Any]:
    """One run in a child process; its figures."""
    from rlhf_desktop.tune.options import TuneConfig

    cfg = TuneConfig.from_mapping({**BASE, "threads": 2, **settings, "data": str(pairs),
                                   "output_dir": str(work / name.replace(" ", "_")),
                                   "max_steps": steps})
    config_file = work / f"{name.replace(' ', '_')}.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    load_before = load()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_desktop.tune", "--config",
                             str(config_file), "--nice", str(nice)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    events = [json.loads(line) for line in proc.stdout if line.startswith('{"event"')]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    step_events = [e for e in events if e["event"] == "step"]
    data: dict[str, Any] = next((e for e in events if e["event"] == "data"), {})
    seconds = [e["seconds"] for e in step_events[1:]] or [e["seconds"] for e in step_events]
    per_step = statistics.median(seconds) if seconds else None
    cpu = [e["cpu_seconds"] for e in step_events[1:]] or [e["cpu_seconds"] for e in step_events]
    pairs_per_step = cfg.batch_size * cfg.grad_accum
    return {
        "name": name,
        "settings": {k: v for k, v in cfg.to_dict().items()
                     if k in ("max_length", "lora_targets", "lora_r", "threads", "batch_size",
                              "grad_accum", "gradient_checkpointing", "bf16",
                              "precompute_ref_log_probs")},
        "exit_status": os.waitstatus_to_exitcode(status),
        "steps": len(step_events),
        "step_seconds": [e["seconds"] for e in step_events],
        "seconds_per_step": per_step,
        "cpu_seconds_per_pair": None if not cpu else round(statistics.median(cpu)
                                                           / pairs_per_step, 2),
        "seconds_per_pair": None if per_step is None else round(per_step / pairs_per_step, 2),
        "minutes_for_200_pairs": None if per_step is None else round(
            per_step / pairs_per_step * 200 / 60, 1),
        "pairs_used": data.get("used"), "pairs_total": data.get("pairs"),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load_avg_before": load_before, "load_avg_after": load(),
        "final": {k: step_events[-1].get(k) for k in ("loss", "accuracy", "margin")}
        if step_events else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=64, help="first N pairs of the data file")
    parser.add_argument("--data", type=Path, default=HH,
                        help="a JSONL file of pairs (default: hh-harmless-dev.jsonl)")
    parser.add_argument("--only", nargs="*", help="configuration names to run")
    parser.add_argument("--nice", type=int, default=19)
    parser.add_argument("--append", action="store_true",
                        help="keep the other configurations' figures in the results file")
    args = parser.parse_args()
    names = args.only or list(CONFIGS)
    results = []
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        work = Path(tmp)
        pairs = work / "pairs.jsonl"
        lines = args.data.read_text(encoding="utf-8").splitlines()[: args.pairs]
        pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name in names:
            result = run_one(name, CONFIGS[name], pairs, args.steps, args.nice, work)
            result["data"] = data_name(args.data, args.pairs)
            result["command"] = COMMAND + " " + " ".join(sys.argv[1:])
            result["date"] = time.strftime("%Y-%m-%d")
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.append:
        from benchmarks._report import RESULTS

        try:
            before = json.loads((RESULTS / "tune.json").read_text(encoding="utf-8"))
            old = [{"data": before.get("data"), "command": before.get("command"),
                    "date": before.get("machine", {}).get("date"), **run}
                   for run in before["runs"]]
        except (OSError, ValueError, KeyError):
            old = []
        fresh = {r["name"] for r in results}
        results = [r for r in old if r["name"] not in fresh] + results
    write_json("tune", {"command": COMMAND + " " + " ".join(sys.argv[1:]),
                        "data": "each run's own (its data and command)",
                        "nice": args.nice, "steps_per_run": args.steps, "runs": results})
    print("\n| configuration | s/step | s/pair | CPU s/pair | 200 pairs | peak RSS | load avg |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['name']} | {r['seconds_per_step']} | {r['seconds_per_pair']} | "
              f"{r['cpu_seconds_per_pair']} | "
              f"{r['minutes_for_200_pairs']} min | {r['peak_rss_mib']} MiB | "
              f"{r['load_avg_before']}–{r['load_avg_after']} |")


if __name__ == "__main__":
    main()
