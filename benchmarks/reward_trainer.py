"""A transformers reward model (TRL RewardTrainer, ``method: reward``) against the tiny model.

Train both on the same pairs of one shared data set (default: 300 PandaLM pairs, whole prompts
kept together, seed 0) and test both on the rest; the reward model is trained by the app's own
entry point, ``python -m rlhf_desktop.tune --config``, in a child process at nice 19, which
also measures its held-out accuracy on the saved folder. Measured: training wall and CPU
seconds per pair, the child's peak RSS, the held-out accuracy of both, and the scoring time of
one turn (4 replies of about 200 tokens) with the saved ranker, as the app's rank worker does.

    .venv/bin/python -m benchmarks.reward_trainer                    # about 40-60 min here
    .venv/bin/python -m benchmarks.reward_trainer --train 300 \
        --data ../shared/data/pandalm-human.jsonl

Results: ``benchmarks/results/reward_trainer.json`` and the ``reward_trainer`` section of
docs/benchmarks.md. The data stays in ../shared/data (never copied into the project).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import ROOT, update_section, write_json

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pandalm-human.jsonl"


def split(path: Path, train_count: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Whole prompts into training until it holds ``train_count`` pairs; the rest is the test."""
    from rlhf_desktop.core.pick_rules import same_reply

    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    # A tie of identical replies is no preference: the app's import leaves it out too.
    rows = [r for r in rows if not same_reply(str(r["chosen"]), str(r["rejected"]))]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(" ".join(row["prompt"].split()), []).append(row)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    train: list[dict] = []
    test: list[dict] = []
    for key in keys:
        (train if len(train) + len(groups[key]) <= train_count else test).extend(groups[key])
    return train, test


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def train_ranker(work: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Run the entry point in a child; its progress events, wall time and peak RSS."""
    cfg = {"method": "reward", "data": "train.jsonl", "eval_data": "test.jsonl",
           "output_dir": "run", "register": False, **settings}
    (work / "run.json").write_text(json.dumps(cfg), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "RLHF_DESKTOP_HOME": str(work / "data")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rlhf_desktop.tune", "--config",
                           str(work / "run.json"), "--nice", "19"], cwd=work, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the tuning run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {"events": events, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def tiny_accuracy(train: list[dict], test: list[dict]) -> dict[str, Any]:
    """The app's tiny model trained on the same pairs, on the same test pairs."""
    from rlhf_desktop.core.formats import parse_record
    from rlhf_desktop.reward.embedder import Embedder
    from rlhf_desktop.reward.hf_ranker import pairwise_accuracy
    from rlhf_desktop.reward.training import train as train_tiny

    embedder = Embedder()
    started = time.monotonic()
    model = train_tiny([parse_record(r) for r in train], None, embedder).model
    trained = time.monotonic() - started
    margins = []
    for row in test:
        pair = parse_record(row)
        chosen, rejected = model.score(pair.prompt_text, [pair.chosen, pair.rejected])
        margins.append(chosen - rejected)
    return {"accuracy": pairwise_accuracy(margins), "train_s": round(trained, 1)}


def turn_latency(folder: Path, repeats: int = 3) -> dict[str, Any]:
    """Score one turn of 4 replies of about 200 tokens each, as the rank worker does."""
    import torch

    from rlhf_desktop.reward.hf_ranker import HFRanker, default_threads

    torch.set_num_threads(default_threads())
    ranker = HFRanker.load(folder)
    words = ("The plan is simple: compare the prices, write the budget down, and keep the "
             "receipts for a month so the numbers are real. ").split()
    replies = [" ".join((words * 20)[i:i + 150]) for i in range(4)]
    tokens = [len(ranker.tokenizer(r)["input_ids"]) for r in replies]
    prompt = "How can I save money on groceries each week?"
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.monotonic(), time.process_time()
        ranker.score(prompt, replies)
        walls.append(time.monotonic() - wall)
        cpus.append(time.process_time() - cpu)
    return {"reply_tokens": tokens, "load_s": round(ranker.load_seconds, 2),
            "turn_wall_s": round(sorted(walls)[len(walls) // 2], 2),
            "turn_cpu_s": round(sorted(cpus)[len(cpus) // 2], 2),
            "dtype": str(next(ranker.model.parameters()).dtype),
            "torch_threads": torch.get_num_threads()}


def markdown(results: list[dict[str, Any]]) -> str:
    """The docs/benchmarks.md section: one row per run, the newest run's scoring time."""
    rows = []
    for r in results:
        t = r["training"]
        rows.append(
            f"| {r['train_pairs']} | {r['test_pairs']} | "
            f"**{r['ranker_accuracy'] * 100:.1f} %** | {r['tiny']['accuracy'] * 100:.1f} % | "
            f"{t['cpu_s_per_pair']:.1f} | {t['wall_s_per_pair']:.1f} | {t['steps']} | "
            f"{t['peak_rss_mb'] / 1024:.1f} GB | {r['load_before']} |")
    r = results[-1]
    lat = r["latency"]
    tokens = sum(lat["reply_tokens"]) // len(lat["reply_tokens"])
    commands = "\n".join(f"    {x['command']}" for x in results)
    return f"""## Reward model with TRL's RewardTrainer (`method: reward`)

{r['data']}: the training pairs (whole prompts on one side, seed {r['seed']}) and a random
sample of the other pairs as the test; both models trained on the same pairs and scored on the
same test pairs. Transformers ranker: SmolLM2-135M-Instruct from the shipped GGUF as
`AutoModelForSequenceClassification(num_labels=1)`, {r['settings_text']}, trained by
`python -m rlhf_desktop.tune` in a child process at nice 19, its accuracy measured on the saved
folder as the app scores. Tiny model: the app's default (MiniLM embeddings + style + length,
Bradley-Terry). {r['machine_cores']} cores shared with other jobs (load average before each run
in the last column), so wall times vary; CPU time is the fair figure.

    {commands.strip()}

| train pairs | test pairs | ranker | tiny | CPU s/pair | wall s/pair | steps | peak RSS | load |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Scoring one turn of 4 replies of {tokens} tokens with the saved ranker, as the rank worker
does: {lat['turn_cpu_s']} CPU s, {lat['turn_wall_s']} s wall ({lat['dtype'].replace('torch.', '')}
weights, {lat['torch_threads']} torch thread); loading it {lat['load_s']} s. The tiny model needs
milliseconds once the replies are embedded. (The "prefer the longer reply" rule alone scores
65.4 % on all of PandaLM.)
"""


def collected() -> list[dict[str, Any]]:
    """Every default-settings run in benchmarks/results, fewest training pairs first."""
    from benchmarks._report import RESULTS

    runs = [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(RESULTS.glob("reward_trainer*.json"))]
    runs = [r for r in runs if "_" not in r["benchmark"].replace("reward_trainer", "")
            or r["benchmark"].startswith("reward_trainer_train")]
    return sorted(runs, key=lambda r: r["train_pairs"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=0,
                        help="score a random sample of this many test pairs (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a tuning setting (value as JSON), e.g. --set lora=false")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/benchmarks.md alone")
    parser.add_argument("--doc-only", action="store_true",
                        help="only rewrite the docs/benchmarks.md section from the results")
    args = parser.parse_args(argv)
    if args.doc_only:
        update_section("reward_trainer", markdown(collected()))
        return 0
    settings: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    train, test = split(args.data, args.train, args.seed)
    if args.test and len(test) > args.test:
        test = random.Random(args.seed).sample(test, args.test)
    work = args.keep or Path(tempfile.mkdtemp(prefix="reward-trainer-"))
    work.mkdir(parents=True, exist_ok=True)
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "test.jsonl", test)
    load_before = round(os.getloadavg()[0], 1)
    run = train_ranker(work, settings)
    events = run["events"]
    steps = [e for e in events if e["event"] == "step"]
    done = next(e for e in events if e["event"] == "done")
    start = next(e for e in events if e["event"] == "start")["config"]
    step_wall = sum(e["seconds"] or 0 for e in steps)
    step_cpu = sum(e["cpu_seconds"] or 0 for e in steps)
    pairs_seen = len(steps) * start["batch_size"] * start["grad_accum"]
    training = {"steps": len(steps), "train_wall_s": step_wall,
                "wall_s_per_pair": step_wall / max(1, pairs_seen),
                "cpu_s_per_pair": step_cpu / max(1, pairs_seen),
                "peak_rss_mb": run["peak_rss_mb"], "run_wall_s": round(run["wall_s"], 1),
                "held_out_scoring_s": done["held_out"].get("seconds"),
                "last_step": {k: steps[-1].get(k) for k in ("loss", "accuracy", "margin")}}
    folder = work / "run" / "ranker"
    result = {
        "command": ".venv/bin/python -m benchmarks.reward_trainer "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "data": args.data.name, "seed": args.seed, "train_pairs": len(train),
        "test_pairs": len(test), "load_before": load_before,
        "machine_cores": os.cpu_count(),
        "settings": {k: start[k] for k in ("max_length", "lora", "lora_r", "lora_targets",
                                           "learning_rate", "batch_size", "grad_accum",
                                           "epochs", "threads", "bf16")},
        "ranker_accuracy": done["held_out"]["accuracy"],
        "training": training,
        "latency": turn_latency(folder),
        "tiny": tiny_accuracy(train, test),
    }
    s = result["settings"]
    lora = f"LoRA r{s['lora_r']} on {'/'.join(s['lora_targets'])}"
    result["settings_text"] = (
        f"{lora if s['lora'] else 'every weight'} + the score head, lr {s['learning_rate']}, "
        f"batch {s['batch_size']} × {s['grad_accum']}, "
        f"{s['epochs']:g} epoch, max_length {s['max_length']}, "
        f"{'bf16' if s['bf16'] else 'fp32'} training")
    name = "reward_trainer" if not settings else "reward_trainer_" + "_".join(
        f"{k}-{v}" for k, v in sorted(settings.items()))
    if args.train != 300:
        name += f"_train{args.train}"
    write_json(name, result)
    if not args.no_doc and not settings:
        update_section("reward_trainer", markdown(collected()))
    print(f"work folder: {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
