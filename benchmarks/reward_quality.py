"""Reward-model quality on real human preferences: every ``../shared/data/*.jsonl`` set.

Protocol, per set and seed: shuffle the pairs; for each training size n (8 … 256, and half
of the set) train on the first n and test on all the rest (disjoint). Every method sees the
same splits. Methods:

- ``longer`` / ``shorter``: the reply with more / fewer words wins (no training);
- ``today``: ``train()`` with the defaults before the style block (reply, prompt×reply,
  length, words; joint);
- ``style_only``: the style block alone (reward/style.py);
- ``joint`` (the new default): today's four blocks and the style block, fitted together;
- ``staged``: the same blocks, style (style block and length) fitted first and the content
  fitted with the style margin held fixed (style control: content judged beyond style);
- ``joint_c1``: ``joint`` with C searched up to 1 (as today's default does).

Calibration: the expected calibration error (ECE, 10 bins of max(p, 1 − p)) of
P(chosen ≻ rejected) = sigmoid(margin / T) on the held-out pairs of the half splits, T being
the temperature ``train()`` fits on its cross-validated margins.

The data is read-only input and never copied into the project. Embeddings are cached in
SQLite (``--cache``, default under /tmp), so a rerun embeds nothing.

Run: ``nice .venv/bin/python -m benchmarks.reward_quality`` (``--quick``: 2 seeds, no
timings; ``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import ROOT, update_section, write_json

DATA_DIR = ROOT.parent / "shared" / "data"
CACHE = Path(tempfile.gettempdir()) / "rlhf-desktop-bench" / "embeddings.sqlite3"
SIZES: tuple[int, ...] = (8, 16, 32, 64, 128, 256)

if "RLHF_DESKTOP_HOME" not in os.environ:  # never touch the user's data folder
    os.environ["RLHF_DESKTOP_HOME"] = tempfile.mkdtemp(prefix="rlhf-bench-")

from benchmarks.reward_prior import fit_prior, prior_methods  # noqa: E402
from benchmarks.reward_simulated import markdown as simulated_markdown  # noqa: E402
from benchmarks.reward_simulated import simulated_users  # noqa: E402
from benchmarks.reward_timings import timings  # noqa: E402
from rlhf_desktop.core.formats import parse_lines  # noqa: E402
from rlhf_desktop.domain import PreferencePair  # noqa: E402
from rlhf_desktop.reward.embedder import Embedder  # noqa: E402
from rlhf_desktop.reward.training import (  # noqa: E402
    TrainConfig,
    pair_matrix,
    pairwise_accuracy,
    train,
)
from rlhf_desktop.storage.embcache import SqliteEmbeddingCache  # noqa: E402

TODAY = TrainConfig(features=("reply", "prompt_x_reply", "length", "words"), fit="joint",
                    c_grid=(0.03, 0.1, 0.3, 1.0))
WITH_STYLE = ("reply", "prompt_x_reply", "length", "words", "style")
CONFIGS: dict[str, TrainConfig] = {
    "today": TODAY,
    "style_only": replace(TODAY, features=("style",)),
    "joint": replace(TODAY, features=WITH_STYLE, c_grid=(0.03, 0.1, 0.3)),
    "staged": replace(TODAY, features=WITH_STYLE, fit="staged"),
    "joint_c1": replace(TODAY, features=WITH_STYLE, c_grid=(0.03, 0.1, 0.3, 1.0)),
}
RULES: tuple[str, ...] = ("longer", "shorter")
METHODS: tuple[str, ...] = (*RULES, *CONFIGS)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(message, file=sys.stderr, flush=True)


def load_set(path: Path, embedder: Embedder) -> list[PreferencePair]:
    """Parse a JSONL set and embed (cache first) every text the methods use."""
    # As the app imports a file: a line it refuses (chosen and rejected the same reply: a tie,
    # not a preference) is left out and counted.
    parsed = parse_lines(path.read_bytes().splitlines())
    if parsed.errors:
        log(f"{path.name}: {len(parsed.errors)} line(s) left out as the app's import leaves "
            f"them out (first: line {parsed.errors[0].line}: {parsed.errors[0].message})")
    pairs = parsed.pairs
    started = time.perf_counter()
    before = embedder.encoded_texts
    for chunk in range(0, len(pairs), 128):  # chunks: the cache is written as it goes
        part = pairs[chunk : chunk + 128]
        embedder.embed([t for p in part for t in (p.prompt_text, p.chosen, p.rejected)])
    log(f"{path.name}: {len(pairs)} pairs, embedded {embedder.encoded_texts - before} new "
        f"texts in {time.perf_counter() - started:.1f} s")
    return pairs


def rule_margins(pairs: Sequence[PreferencePair], rule: str) -> np.ndarray:
    """Word-count difference (chosen − rejected), sign flipped for ``shorter``."""
    diff = np.array([len(p.chosen.split()) - len(p.rejected.split()) for p in pairs], float)
    return diff if rule == "longer" else -diff


def model_margins(train_pairs: Sequence[PreferencePair], test_pairs: Sequence[PreferencePair],
                  cfg: TrainConfig, embedder: Embedder) -> np.ndarray:
    """Held-out margins of ``train()`` with ``cfg``."""
    model = train(train_pairs, cfg, embedder).model
    assert model.weights is not None  # margins in calibrated units (÷ temperature)
    return pair_matrix(test_pairs, model.features, embedder).diffs @ model.weights / (
        model.temperature)


def ece(margins: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of sigmoid(margin) and its reliability table.

    Each held-out pair is judged by the model's confidence in its own pick,
    max(p, 1 − p), against whether the pick was right (a tie counts as half).
    """
    p = 1.0 / (1.0 + np.exp(-margins))
    conf = np.maximum(p, 1.0 - p)
    right = np.where(margins == 0, 0.5, (margins > 0).astype(float))
    edges = np.linspace(0.5, 1.0, bins + 1)
    table: list[dict[str, float]] = []
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if not mask.any():
            continue
        gap = abs(float(right[mask].mean()) - float(conf[mask].mean()))
        total += gap * mask.mean()
        table.append({"from": float(lo), "to": float(hi), "pairs": int(mask.sum()),
                      "confidence": float(conf[mask].mean()),
                      "accuracy": float(right[mask].mean())})
    return {"ece": float(total), "bins": table}


def curve(pairs: list[PreferencePair], seeds: Sequence[int], embedder: Embedder,
          methods: dict[str, Callable[[list[PreferencePair], list[PreferencePair]], np.ndarray]]
          ) -> list[dict[str, Any]]:
    """Per training size: mean, std and per-seed accuracy of every method; ECE at half."""
    n = len(pairs)
    plan = [(str(s), s) for s in SIZES if s < n // 2] + [("half", n // 2),
                                                        ("half, new prompts", n // 2)]
    rows: list[dict[str, Any]] = []
    for label, size in plan:
        per_seed: dict[str, list[float]] = {m: [] for m in methods}
        held_out: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        started = time.perf_counter()
        for seed in seeds:
            perm = np.random.default_rng(seed).permutation(n)
            if label == "half, new prompts":
                perm, size = _prompt_split(pairs, seed)
            tr = [pairs[i] for i in perm[:size]]
            te = [pairs[i] for i in perm[size:]]
            for name, fn in methods.items():
                margins = fn(tr, te)
                per_seed[name].append(pairwise_accuracy(margins))
                held_out[name].append(margins)
        row: dict[str, Any] = {
            "label": label, "train_pairs": size, "test_pairs": n - size,
            "accuracy": {m: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                         for m, v in per_seed.items()},
            "per_seed": per_seed,
        }
        if label.startswith("half"):
            row["calibration"] = {m: ece(np.concatenate(v)) for m, v in held_out.items()
                                  if m not in RULES}
        rows.append(row)
        log(f"  {label:>5}: " + "  ".join(f"{m} {100 * row['accuracy'][m]['mean']:.1f}"
                                         for m in methods)
            + f"  ({time.perf_counter() - started:.0f} s)")
    return rows


def _prompt_split(pairs: Sequence[PreferencePair], seed: int) -> tuple[np.ndarray, int]:
    """A permutation whose first ``size`` pairs hold about half of the prompts, and no test
    pair shares its prompt with a training pair (as a user's next turn is a new prompt)."""
    prompts = sorted({p.prompt_text for p in pairs})
    order = np.random.default_rng(seed).permutation(len(prompts))
    train_prompts = {prompts[i] for i in order[: len(prompts) // 2]}
    inside = [i for i, p in enumerate(pairs) if p.prompt_text in train_prompts]
    outside = [i for i, p in enumerate(pairs) if p.prompt_text not in train_prompts]
    return np.array(inside + outside), len(inside)


def methods_for(embedder: Embedder
                ) -> dict[str, Callable[[list[PreferencePair], list[PreferencePair]], np.ndarray]]:
    """Every compared method as (train pairs, test pairs) → held-out margins."""
    out: dict[str, Callable[[list[PreferencePair], list[PreferencePair]], np.ndarray]] = {}
    for rule in RULES:
        out[rule] = functools.partial(_rule_method, rule=rule)
    for name, cfg in CONFIGS.items():
        out[name] = functools.partial(model_margins, cfg=cfg, embedder=embedder)
    return out


def _rule_method(_train: list[PreferencePair], test: list[PreferencePair], rule: str
                 ) -> np.ndarray:
    return rule_margins(test, rule)


# ---------------------------------------------------------------------------- report

LABELS = {"longer": "longer wins", "shorter": "shorter wins", "today": "today's default",
          "style_only": "style block only", "joint": "joint + style (new default)",
          "staged": "style-controlled (staged)", "joint_c1": "joint + style, C up to 1",
          "prior_only": "prior only (no own labels)", "with_prior": "new default + prior"}


def _pct(acc: dict[str, float]) -> str:
    return f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f}"


def markdown(result: dict[str, Any]) -> str:
    """The docs/benchmarks.md section."""
    seeds = len(result["seeds"])
    lines = [
        "## Reward model quality on real human preferences",
        "",
        "Data: every `../shared/data/*.jsonl` set (human-labelled; never copied into the "
        "project). Pairwise accuracy (%) = share of held-out pairs whose chosen reply scores "
        f"higher (a tie counts as half); mean ± std over {seeds} random splits; each size "
        "trains on n random pairs and tests on all the rest of the set (the issue's protocol); "
        "*half, new prompts* trains on the pairs of half of the prompts and tests on the "
        "pairs of the other half, so no test reply or prompt was seen in training (a user's "
        "next turn is a new prompt; PandaLM has 153 prompts for 842 pairs and 495 replies "
        "that occur in more than one pair, so its random splits reward remembering replies). "
        "Every method sees the same splits.",
        "",
        "- **longer / shorter wins**: word counts, no training.",
        "- **today's default**: `train()` with the defaults before this change: reply, "
        "prompt×reply, length, words blocks, block scaling, C by 5-fold CV over 0.03 … 1.",
        "- **style block only**: the named style features of `reward/style.py` (log words, "
        "headers, list items, bold, code blocks, questions asked back, refusal, apology, "
        "paragraphs, repetition, unfinished, prompt overlap), each column scaled on its own.",
        "- **joint + style (new default)**: today's four blocks and the style block, fitted "
        "together, C by 5-fold CV (folds never split a prompt) over 0.03, 0.1, 0.3.",
        "- **style-controlled (staged)**: the same blocks; style (style block and length) "
        "fitted first, then the content blocks with the style margin held fixed.",
        "- **joint + style, C up to 1**: the same with C searched over 0.03 … 1 (today's "
        "grid); the new default searches 0.03 … 0.3.",
        "- **prior only / new default + prior**: a model trained on the *other* sets (HH "
        "harmless for a helpfulness set: the anti-transfer test; the helpfulness sets for "
        "HH), used alone, or added to the new default as one score whose weight the user's "
        "labels fit (out-of-fold, may turn negative): `benchmarks/reward_prior.py`.",
        "",
    ]
    for ds in result["sets"]:
        methods = list(ds["curve"][0]["accuracy"])
        prior_note = (f" Prior fitted on {', '.join(ds['prior_from'])}."
                      if ds.get("prior_from") else "")
        lines += [f"### `{ds['name']}` ({ds['pairs']} pairs)", "",
                  f"Bold: the best trained method of the row.{prior_note}", "",
                  "| train pairs | " + " | ".join(LABELS[m] for m in methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for row in ds["curve"]:
            label = (f"{row['train_pairs']} ({row['label']})" if row["label"].startswith("half")
                     else row["label"])
            best = max((m for m in methods if m not in RULES),
                       key=lambda m: row["accuracy"][m]["mean"])
            cells = [f"**{_pct(row['accuracy'][m])}**" if m == best else
                     _pct(row["accuracy"][m]) for m in methods]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for half in ds["curve"][-2:]:
            lines += ["", f"ECE of P(chosen ≻ rejected) at {half['label']} (lower is better): "
                      + ", ".join(f"{LABELS[m]} {100 * c['ece']:.1f} %"
                                  for m, c in half["calibration"].items())]
        lines.append("")
    if result.get("simulated"):
        lines += simulated_markdown(result["simulated"])
    t = result.get("timings")
    if t:
        lines += [
            "Timings on 2 CPU cores shared with other jobs (1-minute load average "
            f"{t['load_average_before'][0]:.1f} before, {t['load_average_after'][0]:.1f} "
            "after; upper bounds):",
            "",
            "| what | time |",
            "|---|---|",
            f"| embed, no cache ({t['embedding']['what']}) | "
            f"{t['embedding']['texts_per_s']:.0f} texts/s |",
            f"| load the embedder (once per process) | {t['embedder_load_s']:.1f} s |",
        ]
        for name, secs in t["train_1k_s"].items():
            lines.append(f"| `train()` with CV, 1,000 real pairs, embeddings cached, "
                         f"{LABELS.get(name, name)} | {secs:.2f} s (10,000 synthetic: "
                         f"{t['train_10k_s'][name]:.2f} s) |")
        lines += [
            f"| `score` 4 replies, texts in the in-memory cache | "
            f"{t['score4_warm_memory_ms']:.2f} ms |",
            f"| `score` 4 replies, texts only in the SQLite cache | "
            f"{t['score4_warm_sqlite_ms']:.1f} ms |",
            f"| `score` 4 replies, texts never seen (embedder loaded) | "
            f"{t['score4_cold_ms']:.0f} ms (best {t['score4_cold_best_ms']:.0f} ms) |",
            "",
        ]
    lines.append(f"Measured {result['date']}. Reproduce: `nice .venv/bin/python -m "
                 "benchmarks.reward_quality` (`--quick`: 2 seeds, no timings). JSON: "
                 "`benchmarks/results/reward_quality.json`.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the JSON and the docs section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 seeds, no timings")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--only", nargs="*", default=None, help="set names (file stems)")
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="SQLite embedding cache kept between runs")
    parser.add_argument("--no-timings", action="store_true")
    parser.add_argument("--no-simulated", action="store_true", help="skip simulated users")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; leave docs/ and benchmarks/results/ alone")
    args = parser.parse_args(argv)
    files = sorted(args.data_dir.glob("*.jsonl"))
    if args.only:
        files = [f for f in files if f.stem in args.only]
    if not files:
        print(f"no *.jsonl sets in {args.data_dir}", file=sys.stderr)
        return 2
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    seeds = [0, 1] if args.quick else [0, 1, 2]
    embedder = Embedder(cache=SqliteEmbeddingCache(args.cache))
    methods = methods_for(embedder)
    sets: list[dict[str, Any]] = []
    first: list[PreferencePair] = []
    loaded = {path: load_set(path, embedder) for path in files}
    for path in files:
        pairs = loaded[path]
        first = first or pairs
        # The prior: HH for a helpfulness set (the anti-transfer test), the others for HH.
        sources = [p for p in files if p != path and (p.stem.startswith("hh")
                                                      or path.stem.startswith("hh"))]
        prior = fit_prior([q for p in sources for q in loaded[p]], embedder) if sources else None
        set_methods = dict(methods)
        if prior is not None:
            set_methods.update(prior_methods(prior, embedder))
        sets.append({"name": path.name, "pairs": len(pairs),
                     "prior_from": [p.name for p in sources],
                     "curve": curve(pairs, seeds, embedder, set_methods)})
    simulated = None if args.no_simulated else simulated_users(
        {path.stem: loaded[path] for path in files}, embedder, seeds[:2])
    result: dict[str, Any] = {
        "simulated": simulated,
        "seeds": seeds,
        "date": time.strftime("%Y-%m-%d"),
        "methods": list(methods),
        "configs": {name: asdict(cfg) for name, cfg in CONFIGS.items()},
        "default": asdict(TrainConfig()),
        "sets": sets,
    }
    if not (args.quick or args.no_timings):
        hh = next((s for s, f in zip(sets, files, strict=True) if f.stem.startswith("hh")), None)
        pairs = load_set(files[sets.index(hh)], embedder) if hh else first
        result["timings"] = timings(pairs, args.cache, args.quick,
                                    {"today": TODAY, "default": TrainConfig()})
    if args.no_write:
        print(markdown(result))
        return 0
    write_json("reward_quality", result)
    update_section("reward_quality", markdown(result))
    log("wrote benchmarks/results/reward_quality.json and docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
