"""Did tuning help? Reward-model-judged win rate of a tuned chat-model version against the base
on held-out prompts (issue 14, item 2).

For each human preference set named (``../shared/data/NAME.jsonl``, never copied here):

1. Split by prompt (seeded): held-out prompts are never trained on, neither by the tune nor
   by the judge.
2. Tune the built-in SmolLM2-135M with the app's own entry point,
   ``python -m rlhf_desktop.tune --config FILE --nice N --data-dir DIR`` (the measured
   defaults; only ``data``, ``output_dir``, ``system_prompt`` and the pair budget are set),
   on a seeded sample of the train prompts' pairs; it makes a GGUF LoRA adapter and
   registers a chat-model version.
3. Train the app's tiny reward model (``rlhf_desktop.reward.training.train``, defaults) on all
   the train prompts' pairs: the judge.
4. For each held-out prompt, one reply from the base, one from the tuned version (llama.cpp,
   the chat's system prompt and sampling, seed = base seed + prompt index, the same seed on
   both sides), and one more from the base with another seed (the noise floor).
5. The judge scores both replies of a prompt; tuned wins when its score is higher (a tie
   counts half). 95 % CI: percentile bootstrap over prompts. The same with the content part
   of the score only (``TinyRewardModel.explain``: score = style + content, style = the
   style and length blocks), so a version that only got longer or shorter is seen.

    .venv/bin/python -m benchmarks.tune_winrate [--sets pandalm-human hh-harmless-dev]
        [--tune-pairs 192] [--held-out 60] [--seed 7] [--work DIR] [--nice 19]

Stages are kept in ``--work`` (default /tmp/rlhf-desktop-bench/tune-winrate) and reused on a
rerun with the same settings. Writes ``benchmarks/results/tune_winrate.json`` (figures, no
texts from the data sets) and the ``tune_winrate`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import ROOT, update_section, write_json
from benchmarks._winrate import BOOTSTRAP, mean_gain, outcomes, split_prompts, win_rate

DATA = ROOT.parent / "shared" / "data"
COMMAND = ".venv/bin/python -m benchmarks.tune_winrate"
SYSTEM_PROMPT = "You are a helpful assistant."  # Settings.system_prompt's default
SAMPLING: dict[str, Any] = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 256}
"""Settings' defaults (the chat's sampling)."""
NOISE_SEED_OFFSET = 100_000


# ---------------------------------------------------------------- stages

def load_set(name: str) -> tuple[list[str], list[Any]]:
    """Raw lines and parsed pairs of ``../shared/data/NAME.jsonl``."""
    from rlhf_desktop.core.formats import parse_record

    lines = [ln for ln in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
             if ln.strip()]
    return lines, [parse_record(json.loads(ln)) for ln in lines]


def prompt_key(pair: Any) -> str:
    """The whole conversation before the reply (what a split must keep together)."""
    return "\x00".join(f"{m.role}:{m.content}" for m in pair.prompt)


def run_tune(work: Path, lines: list[str], nice: int, max_steps: int = 0) -> dict[str, Any]:
    """One real ``python -m rlhf_desktop.tune`` run; its events and timings."""
    record_file = work / "tune-record.json"
    if record_file.exists():
        record: dict[str, Any] = json.loads(record_file.read_text(encoding="utf-8"))
        steps = train_history(work / "run")  # records written before these fields existed
        pairs_per_step = record["settings"]["batch_size"] * record["settings"]["grad_accum"]
        record.setdefault("pairs_trained", len(steps) * pairs_per_step)
        record.setdefault("loss_by_step", [round(e["loss"], 4) for e in steps])
        return record
    data, stamp = work / "tune-pairs.jsonl", work / "tune-started"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not stamp.exists():  # the first start of this run (a resumed run keeps it)
        stamp.write_text(str(time.time()), encoding="utf-8")
    config = {"data": str(data), "output_dir": str(work / "run"),
              "system_prompt": SYSTEM_PROMPT, **({"max_steps": max_steps} if max_steps else {})}
    (work / "tune-config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    command = [sys.executable, "-m", "rlhf_desktop.tune", "--config",
               str(work / "tune-config.json"), "--nice", str(nice),
               "--data-dir", str(work / "data-dir")]
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    events, done, usage = run_tune_process(command, "the tune")
    steps = train_history(work / "run")
    report: dict[str, Any] = next((e for e in events if e["event"] == "data"), {})
    settings = json.loads((work / "data-dir" / "chat_models" / f"v{done['version']:04d}"
                           / "manifest.json").read_text(encoding="utf-8"))["settings"]
    cpu = [e["cpu_seconds"] for e in events if e["event"] == "step" and e.get("cpu_seconds")]
    wall = Path(done["adapter_gguf"]).stat().st_mtime - float(stamp.read_text(encoding="utf-8"))
    record = {
        "command": " ".join(["python", *command[1:]]),
        "settings": settings, "pairs_in_file": len(lines),
        "pairs_used": report.get("used"), "left_out_prompt_too_long": len(
            report.get("dropped_prompt_too_long", []) or []),
        "steps": len(steps), "pairs_trained": len(steps) * settings["batch_size"]
        * settings["grad_accum"], "wall_s": round(wall, 1),
        "last_invocation_wall_s": round(time.perf_counter() - started, 1),
        "last_invocation_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "cpu_s_per_pair": round(sum(cpu) / (len(cpu) * settings["batch_size"]
                                            * settings["grad_accum"]), 2) if cpu else None,
        "loss_by_step": [round(e["loss"], 4) for e in steps],
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2),
        "first_step": {k: steps[0].get(k) for k in ("loss", "accuracy", "margin")},
        "last_step": {k: steps[-1].get(k) for k in ("loss", "accuracy", "margin")},
        "adapter_gguf": done["adapter_gguf"], "version": done["version"],
    }
    record_file.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def run_tune_process(command: list[str], label: str
                     ) -> tuple[list[dict[str, Any]], dict[str, Any], Any]:
    """Run one ``python -m rlhf_desktop.tune`` to the end, printing its steps: its JSON
    events, the ``done`` event and the child's resource usage; SystemExit when it failed."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    for line in proc.stdout:
        if line.startswith('{"event"'):
            events.append(json.loads(line))
            e = events[-1]
            if e["event"] == "step":
                print(f"  {label}: step {e['step']}/{e['max_steps']} loss {e.get('loss')} "
                      f"{e.get('seconds')} s", flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read() if proc.stderr else ""
    done: dict[str, Any] = next((e for e in events if e["event"] == "done"), {})
    if os.waitstatus_to_exitcode(status) != 0 or done.get("status") != "completed":
        raise SystemExit(f"{label} failed ({done or 'no done event'}): {stderr[-2000:]}")
    return events, done, usage


def train_history(run_dir: Path) -> list[dict[str, Any]]:
    """Per optimizer step: loss, reward accuracy and margin, from the last checkpoint's
    ``trainer_state.json`` (complete also when the run was stopped and resumed)."""
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"),
                         key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    if not checkpoints:
        return []
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text(encoding="utf-8"))
    return [{"step": h["step"], "loss": h["loss"], "accuracy": h.get("rewards/accuracies"),
             "margin": h.get("rewards/margins")} for h in state["log_history"] if "loss" in h]


def generate(work: Path, prompts: list[list[dict[str, str]]], adapter: str | None,
             seed: int, side: str) -> list[dict[str, Any]]:
    """One side's replies (kept in ``replies-SIDE.json``): llama.cpp on the base file, with
    the adapter for the tuned side, the chat's system prompt and sampling, seed + index."""
    out_file = work / f"replies-{side}.json"
    if out_file.exists():
        return list(json.loads(out_file.read_text(encoding="utf-8")))
    import asyncio

    from rlhf_desktop import config
    from rlhf_desktop.domain import Message, SamplingParams
    from rlhf_desktop.providers.local import LocalProvider

    offset = NOISE_SEED_OFFSET if side == "base_other_seed" else 0

    async def run() -> list[dict[str, Any]]:
        # The app's own built-in provider (xllamacpp), the adapter applied for the tuned side.
        llm = LocalProvider(config.default_gguf_path(), n_threads=1, n_ctx=2048,
                            lora_path=adapter)
        out = []
        try:
            for i, messages in enumerate(prompts):
                started = time.perf_counter()
                params = SamplingParams(n=1, temperature=SAMPLING["temperature"],
                                        top_p=SAMPLING["top_p"],
                                        max_tokens=SAMPLING["max_tokens"],
                                        system_prompt=SYSTEM_PROMPT, seed=seed + offset + i)
                cands = await llm.generate([Message(m["role"], m["content"]) for m in messages],
                                           params)
                out.append({"text": cands[0].text, "finish": cands[0].finish_reason,
                            "tokens": cands[0].completion_tokens,
                            "seconds": round(time.perf_counter() - started, 2)})
        finally:
            await llm.aclose()
        return out

    replies = asyncio.run(run())
    out_file.write_text(json.dumps(replies), encoding="utf-8")
    return replies


def judge(work: Path, train_pairs: list[Any], held_pairs: list[Any], prompts: list[str],
          replies: dict[str, list[dict[str, Any]]], seed: int) -> dict[str, Any]:
    """Train the tiny reward model on the train split; score and compare."""
    from rlhf_desktop.reward.embedder import Embedder
    from rlhf_desktop.reward.training import train
    from rlhf_desktop.storage.embcache import SqliteEmbeddingCache

    embedder = Embedder(cache=SqliteEmbeddingCache(work / "embeddings.sqlite3"))
    started = time.perf_counter()
    result = train(train_pairs, embedder=embedder)
    model = result.model
    train_s = time.perf_counter() - started
    held_acc = float(np.mean(outcomes(
        [model.score(p.prompt_text, [p.chosen])[0] for p in held_pairs],
        [model.score(p.prompt_text, [p.rejected])[0] for p in held_pairs])))
    parts: dict[str, dict[str, list[float]]] = {k: {"score": [], "content": []} for k in replies}
    for i, prompt in enumerate(prompts):
        names = list(replies)
        explained = model.explain(prompt, [replies[k][i]["text"] for k in names])
        for name, e in zip(names, explained, strict=True):
            parts[name]["score"].append(e["score"])
            parts[name]["content"].append(e["content"])

    def words(name: str) -> list[int]:
        return [len(r["text"].split()) for r in replies[name]]

    tuned_w, base_w, other_w = words("tuned"), words("base"), words("base_other_seed")
    return {
        "judge": {"train_pairs": len(train_pairs), "cv_accuracy": result.metrics.get(
            "cv_accuracy"), "held_out_pairs": len(held_pairs),
            "held_out_accuracy": round(100 * held_acc, 1), "train_s": round(train_s, 1)},
        "tuned_vs_base": win_rate(parts["tuned"]["score"], parts["base"]["score"], seed),
        "noise_floor_base_vs_base": win_rate(parts["base_other_seed"]["score"],
                                             parts["base"]["score"], seed),
        "content_only_tuned_vs_base": win_rate(parts["tuned"]["content"],
                                               parts["base"]["content"], seed),
        "content_only_noise_floor": win_rate(parts["base_other_seed"]["content"],
                                             parts["base"]["content"], seed),
        "mean_score_gain": mean_gain(parts["tuned"]["score"], parts["base"]["score"], seed),
        "noise_mean_score_gain": mean_gain(parts["base_other_seed"]["score"],
                                           parts["base"]["score"], seed),
        # does the judge's verdict follow the length difference? (Pearson r over prompts)
        "length_correlation": {
            f"{side}_vs_base": {
                part: round(float(np.corrcoef(np.subtract(words(side), base_w),
                                              np.subtract(parts[side][part],
                                                          parts["base"][part]))[0, 1]), 2)
                for part in ("score", "content")}
            for side in ("tuned", "base_other_seed")},
        "mean_words": {"base": round(statistics.mean(base_w), 1),
                       "base_other_seed": round(statistics.mean(other_w), 1),
                       "tuned": round(statistics.mean(tuned_w), 1)},
        "tuned_longer_share": round(100 * float(np.mean(outcomes(tuned_w, base_w))), 1),
        "identical_replies": sum(t["text"] == b["text"] for t, b in
                                 zip(replies["tuned"], replies["base"], strict=True)),
        "cut_at_max_tokens": {k: sum(r["finish"] == "length" for r in v)
                              for k, v in replies.items()},
        "generation_s": {k: round(sum(r["seconds"] for r in v), 1) for k, v in replies.items()},
    }


def run_set(name: str, args: argparse.Namespace, tune_pairs: int) -> dict[str, Any]:
    """Every stage for one data set."""
    work = Path(args.work) / f"{name}-p{tune_pairs}-h{args.held_out}-s{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    lines, pairs = load_set(name)
    keys = [prompt_key(p) for p in pairs]
    train_keys, held_keys = split_prompts(keys, args.held_out, args.seed)
    train_idx = [i for i, k in enumerate(keys) if k in train_keys]
    rng = random.Random(args.seed)
    tune_idx = sorted(rng.sample(train_idx, min(tune_pairs, len(train_idx))))
    print(f"{name}: {len(train_idx)} train pairs ({len(train_keys)} prompts), tuning on "
          f"{len(tune_idx)}, {len(held_keys)} held-out prompts", flush=True)
    held_first: dict[str, Any] = {}
    for i, k in enumerate(keys):
        if k in held_keys:
            held_first.setdefault(k, pairs[i])
    held = [held_first[k] for k in sorted(held_first)]
    messages = [[m.to_dict() for m in p.prompt] for p in held]
    if args.base_only:
        for side in ("base", "base_other_seed"):
            generate(work, messages, None, args.seed, side)
        raise SystemExit(f"{name}: base replies written to {work}")
    tune = run_tune(work, [lines[i] for i in tune_idx], args.nice, args.max_steps)
    replies = {side: generate(work, messages, None, args.seed, side)
               for side in ("base", "base_other_seed")}
    replies["tuned"] = generate(work, messages, tune["adapter_gguf"], args.seed, "tuned")
    figures = judge(work, [pairs[i] for i in train_idx],
                    [p for p, k in zip(pairs, keys, strict=True) if k in held_keys],
                    [p.prompt_text for p in held], replies, args.seed)
    longer = sum(len(p.chosen.split()) > len(p.rejected.split()) for p in pairs)
    return {"set": f"{name}.jsonl", "pairs": len(pairs), "prompts": len(set(keys)),
            "longer_chosen_share": round(100 * longer / len(pairs), 1),
            "held_out_prompts": len(held), "train_prompts": len(train_keys),
            "train_pairs": len(train_idx), "tune": tune, **figures}


# ---------------------------------------------------------------- report

def verdict(r: dict[str, Any]) -> str:
    """Whether the target (> 50 % with the CI above 50 %) is met, in words."""
    w = r["tuned_vs_base"]
    if w["ci95"][0] > 50:
        return "**met**"
    if w["ci95"][1] < 50:
        return "**missed: tuned is worse than base**"
    return "**missed: no difference the CI can tell from chance**"


def markdown(sets: list[dict[str, Any]], command: str) -> str:
    """The docs section."""
    out = ["## Did tuning help? Win rate of tuned against base (reward-model judged)", "",
           f"`{command}` (JSON: `benchmarks/results/tune_winrate.json`). Per set: split by "
           "prompt (seeded); tune SmolLM2-135M with the app's own `python -m "
           "rlhf_desktop.tune --config FILE` (measured defaults, nice 19) on a seeded "
           "sample of the train prompts' pairs; the judge is the app's tiny reward model "
           "trained on all train prompts' pairs; one reply per held-out prompt from base and "
           "from tuned (llama.cpp, the chat's system prompt, temperature "
           f"{SAMPLING['temperature']}, top_p {SAMPLING['top_p']}, max_tokens "
           f"{SAMPLING['max_tokens']}, the same seed on both sides). Win: higher judge score "
           "(ties half); 95 % CI by bootstrap over prompts. Noise floor: base against base "
           "with another seed, judged the same way. Content only: the score minus its style "
           "and length part (`explain`), a length-controlled judge.", "",
           "| set (human taste) | tune | judge held-out acc. | tuned vs base | noise floor "
           "| content only: tuned vs base (noise) | mean words base → tuned | target |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in sets:
        t, w, n = r["tune"], r["tuned_vs_base"], r["noise_floor_base_vs_base"]
        c, cn = r["content_only_tuned_vs_base"], r["content_only_noise_floor"]
        out.append(
            f"| `{r['set']}` (longer chosen {r['longer_chosen_share']} %) | "
            f"{t['pairs_trained']} of {t['pairs_in_file']} pairs, {t['steps']} steps, "
            f"{t['wall_s'] / 60:.0f} min wall (load "
            f"{t['load_avg_before']}–{t['load_avg_after']}) | {r['judge']['held_out_accuracy']} % "
            f"| **{w['win_rate']} %** [{w['ci95'][0]}, {w['ci95'][1]}] (n={w['n']}) | "
            f"{n['win_rate']} % [{n['ci95'][0]}, {n['ci95'][1]}] | {c['win_rate']} % "
            f"[{c['ci95'][0]}, {c['ci95'][1]}] ({cn['win_rate']} %) | "
            f"{r['mean_words']['base']} → {r['mean_words']['tuned']} | {verdict(r)} |")
    out += ["", "Target: tuned beats base on more than 50 % of held-out prompts with the 95 % "
            "CI above 50 %.", ""]
    for r in sets:
        t, w = r["tune"], r["tuned_vs_base"]
        first, last = t["first_step"], t["last_step"]
        g, ng = r["mean_score_gain"], r["noise_mean_score_gain"]
        tl, nl = (r["length_correlation"][f"{k}_vs_base"] for k in ("tuned", "base_other_seed"))
        out.append(
            f"- `{r['set']}`: {r['prompts']} prompts, {r['train_prompts']} for training "
            f"({r['train_pairs']} pairs: the judge's; the tune's {t['pairs_in_file']} sampled "
            f"from them; {t['left_out_prompt_too_long']} left out, prompt longer than "
            f"max_length), {r['held_out_prompts']} held out. Tune: "
            f"{t['cpu_s_per_pair']} CPU s/pair, peak RSS {t['peak_rss_mib']} MiB, DPO loss "
            f"{_f(first.get('loss'))} → {_f(last.get('loss'))}, batch reward accuracy "
            f"{_f(last.get('accuracy'))} and margin {_f(last.get('margin'))} on the last step. "
            f"Judge: {r['judge']['held_out_accuracy']} % pairwise accuracy on the "
            f"{r['judge']['held_out_pairs']} human pairs of the held-out prompts. Tuned won "
            f"{w['wins']}, lost {w['losses']}, tied {w['ties']}; mean score gain "
            f"{g['mean']} [{g['ci95'][0]}, {g['ci95'][1]}] (noise floor {ng['mean']} "
            f"[{ng['ci95'][0]}, {ng['ci95'][1]}]); correlation of the score gain with the "
            f"word-count gain over prompts r = {tl['score']} (content only "
            f"{tl['content']}; base vs base {nl['score']}, content only "
            f"{nl['content']}); the tuned reply was the longer one on "
            f"{r['tuned_longer_share']} % of prompts; {r['identical_replies']} of "
            f"{w['n']} replies were identical to the base's (same seed); replies cut at "
            f"max_tokens: {r['cut_at_max_tokens']}.")
    return "\n".join(out)


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["pandalm-human"])
    parser.add_argument("--tune-pairs", type=int, nargs="+", default=[192],
                        help="pairs to tune on: one number for every set, or one per set")
    parser.add_argument("--held-out", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nice", type=int, default=19)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "rlhf-desktop-bench"
                                              / "tune-winrate"))
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="the tune's max_steps (0: one epoch, the default); with the same "
                             "--work a cancelled run resumes from its last checkpoint")
    parser.add_argument("--note", default="", help="a remark on this run for the docs")
    parser.add_argument("--base-only", action="store_true",
                        help="only the base replies (they need no tune; run beside it)")
    args = parser.parse_args()
    argv = sys.argv[1:]
    if "--note" in argv:  # the remark is kept beside the command, not in it
        del argv[argv.index("--note"):argv.index("--note") + 2]
    command = f"{COMMAND} " + " ".join(argv)
    budgets = args.tune_pairs * len(args.sets) if len(args.tune_pairs) == 1 else args.tune_pairs
    if len(budgets) != len(args.sets):
        parser.error("--tune-pairs: one number, or one per set")
    sets = [run_set(name, args, pairs) for name, pairs in zip(args.sets, budgets, strict=True)]
    write_json("tune_winrate", {"command": command.strip(), "seed": args.seed,
                                "tune_pairs": args.tune_pairs, "held_out": args.held_out,
                                "sampling": SAMPLING, "system_prompt": SYSTEM_PROMPT,
                                "noise_seed_offset": NOISE_SEED_OFFSET,
                                "bootstrap_resamples": BOOTSTRAP, "note": args.note,
                                "sets": sets})
    text = markdown(sets, command.strip()) + (f"\n\n{args.note}" if args.note else "")
    if not args.no_docs:
        update_section("tune_winrate", text)
    print(text)


if __name__ == "__main__":
    main()
