"""Reward-model quality on real human preferences, and how long it takes.

Data: ``../shared/data/hh-harmless-dev.jsonl`` (1,149 HH-RLHF harmless pairs, read-only, never
copied into the project). Protocol, per seed: shuffle the pairs; for each training size train
on the first n and test on all the rest (disjoint); "half" trains on 574 and tests on 575
(the issue's protocol); "all" is 5-fold cross-fitting (train on 919, every pair tested once).

Compared, on identical splits:
- ``bt``: :func:`rlhf_desktop.reward.training.train` with the default ``TrainConfig``;
- ``bt_previous``: the previous defaults (reply, prompt×reply, length; per-column RMS scaling;
  C grid 1e-5…0.1) to show what the tuning bought;
- ``seed``: the seed's design: scikit-learn ``LogisticRegression`` on the embedding of
  ``prompt + "\\n\\n" + reply`` (the whole HH transcript, so MiniLM's 256-token window often
  cuts the reply off), pointwise labels chosen = 1 / rejected = 0, score = ``predict_proba``;
- ``shorter``: prefer the reply with fewer words (no training; a tie counts as half).

Timings: embedding throughput with no cache, ``train()`` with CV at 1k real pairs (and 10k
synthetic ones: real vectors tiled with small noise), and ``score`` latency for 4 replies
with the in-memory cache warm, with only the SQLite cache warm, and cold (texts never seen).

Run: ``.venv/bin/python -m benchmarks.reward_quality`` (``--quick`` for 2 seeds and fewer
timing repeats). Embeddings are cached in ``benchmarks/results/.cache/embeddings.sqlite3``
(git-ignored by ``*.sqlite3``), so a second run does not re-embed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import ROOT, update_section, write_json

DATA = ROOT.parent / "shared" / "data" / "hh-harmless-dev.jsonl"
CACHE = ROOT / "benchmarks" / "results" / ".cache" / "embeddings.sqlite3"
SIZES: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
METHODS: tuple[str, ...] = ("bt", "bt_previous", "seed", "shorter")
ABLATIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("reply", ("reply",), "block"),
    ("reply + length", ("reply", "length"), "block"),
    ("reply + prompt×reply + length", ("reply", "prompt_x_reply", "length"), "block"),
    ("reply + length + words", ("reply", "length", "words"), "block"),
    ("reply + prompt×reply + length + words", ("reply", "prompt_x_reply", "length", "words"),
     "block"),
    ("same four, per-column scaling", ("reply", "prompt_x_reply", "length", "words"), "dim"),
)

if "RLHF_DESKTOP_HOME" not in os.environ:  # never touch the user's data folder
    os.environ["RLHF_DESKTOP_HOME"] = tempfile.mkdtemp(prefix="rlhf-bench-")

from rlhf_desktop.domain import Message, PreferencePair  # noqa: E402
from rlhf_desktop.reward.embedder import Embedder  # noqa: E402
from rlhf_desktop.reward.training import (  # noqa: E402
    TrainConfig,
    pair_matrix,
    pairwise_accuracy,
    train,
)
from rlhf_desktop.services.formats import parse_record  # noqa: E402
from rlhf_desktop.storage.embcache import SqliteEmbeddingCache  # noqa: E402


@dataclass
class Data:
    """The pairs, the seed's texts and every vector the comparisons need (cached)."""

    pairs: list[PreferencePair]
    seed_chosen: np.ndarray
    seed_rejected: np.ndarray
    words_chosen: np.ndarray
    words_rejected: np.ndarray


def log(message: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(message, file=sys.stderr, flush=True)


def load_data(path: Path, embedder: Embedder) -> Data:
    """Parse the JSONL, embed (cache first) every text that any method uses."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip()]
    pairs = [parse_record(r) for r in records]
    started = time.perf_counter()
    before = embedder.encoded_texts
    embedder.embed([p.prompt_text for p in pairs])
    embedder.embed([p.chosen for p in pairs])
    embedder.embed([p.rejected for p in pairs])
    seed_c = embedder.embed([f"{r['prompt']}\n\n{p.chosen}" for r, p in zip(records, pairs,
                                                                             strict=True)])
    seed_r = embedder.embed([f"{r['prompt']}\n\n{p.rejected}" for r, p in zip(records, pairs,
                                                                              strict=True)])
    log(f"embedded {embedder.encoded_texts - before} new texts in "
        f"{time.perf_counter() - started:.1f} s (the rest from the cache)")
    return Data(
        pairs=pairs,
        seed_chosen=seed_c.astype(np.float64),
        seed_rejected=seed_r.astype(np.float64),
        words_chosen=np.array([len(p.chosen.split()) for p in pairs], dtype=np.float64),
        words_rejected=np.array([len(p.rejected.split()) for p in pairs], dtype=np.float64),
    )


# ---------------------------------------------------------------------------- methods


def bt_margins(data: Data, train_idx: np.ndarray, test_idx: np.ndarray, cfg: TrainConfig,
               embedder: Embedder) -> tuple[np.ndarray, dict[str, Any]]:
    """Held-out margins of the project's ``train()`` and its metrics."""
    result = train([data.pairs[i] for i in train_idx], cfg, embedder)
    model = result.model
    assert model.weights is not None
    diffs = pair_matrix([data.pairs[i] for i in test_idx], model.features, embedder).diffs
    return diffs @ model.weights, result.metrics


def seed_margins(data: Data, train_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
    """The seed's pointwise logistic regression on prompt+reply embeddings."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([data.seed_chosen[train_idx], data.seed_rejected[train_idx]])
    y = np.r_[np.ones(len(train_idx)), np.zeros(len(train_idx))]
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    p_chosen = clf.predict_proba(data.seed_chosen[test_idx])[:, 1]
    p_rejected = clf.predict_proba(data.seed_rejected[test_idx])[:, 1]
    return np.asarray(p_chosen - p_rejected)


def shorter_margins(data: Data, test_idx: np.ndarray) -> np.ndarray:
    """Prefer the reply with fewer words."""
    return data.words_rejected[test_idx] - data.words_chosen[test_idx]


def previous_config() -> TrainConfig:
    """The defaults before this benchmark tuned them."""
    return TrainConfig(
        features=("reply", "prompt_x_reply", "length"),
        scaling="dim",
        c_grid=(1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1),
        default_c=3e-4,
    )


def evaluate_split(data: Data, train_idx: np.ndarray, test_idx: np.ndarray,
                   embedder: Embedder) -> dict[str, Any]:
    """Every method's held-out margins on one split, plus what train() chose."""
    bt, metrics = bt_margins(data, train_idx, test_idx, TrainConfig(), embedder)
    previous, prev_metrics = bt_margins(data, train_idx, test_idx, previous_config(), embedder)
    return {
        "bt": bt,
        "bt_previous": previous,
        "seed": seed_margins(data, train_idx, test_idx),
        "shorter": shorter_margins(data, test_idx),
        "c": metrics["c"],
        "cv_accuracy": metrics["cv_accuracy"],
        "c_previous": prev_metrics["c"],
    }


def learning_curve(data: Data, seeds: Sequence[int], embedder: Embedder) -> list[dict[str, Any]]:
    """Per training size: per-seed accuracies of every method, chosen C and seed ties."""
    n = len(data.pairs)
    rows: list[dict[str, Any]] = []
    plan: list[tuple[str, int]] = [(str(s), s) for s in SIZES if s < n]
    plan += [("half", n // 2), ("all", n - n // 5)]
    for label, size in plan:
        per_seed: dict[str, list[float]] = {m: [] for m in METHODS}
        chosen_c: list[float] = []
        previous_c: list[float] = []
        cv_acc: list[float] = []
        seed_ties = 0
        tested = 0
        started = time.perf_counter()
        for seed in seeds:
            perm = np.random.default_rng(seed).permutation(n)
            if label == "all":  # 5-fold cross-fitting: every pair held out once
                margins: dict[str, np.ndarray] = {m: np.zeros(n) for m in METHODS}
                for fold in np.array_split(perm, 5):
                    train_idx = np.setdiff1d(perm, fold)
                    out = evaluate_split(data, train_idx, fold, embedder)
                    for m in METHODS:
                        margins[m][fold] = out[m]
                    chosen_c.append(out["c"])
                    previous_c.append(out["c_previous"])
                    cv_acc.append(out["cv_accuracy"])
            else:
                train_idx, test_idx = perm[:size], perm[size:]
                out = evaluate_split(data, train_idx, test_idx, embedder)
                margins = {m: out[m] for m in METHODS}
                chosen_c.append(out["c"])
                previous_c.append(out["c_previous"])
                if out["cv_accuracy"] is not None:
                    cv_acc.append(out["cv_accuracy"])
            for m in METHODS:
                per_seed[m].append(pairwise_accuracy(margins[m]))
            seed_ties += int(np.sum(margins["seed"] == 0))
            tested += len(margins["seed"])
        row: dict[str, Any] = {
            "label": label,
            "train_pairs": size,
            "test_pairs": n if label == "all" else n - size,
            "accuracy": {m: _mean_std(v) for m, v in per_seed.items()},
            "per_seed": per_seed,
            "chosen_c": chosen_c,
            "previous_c": previous_c,
            "cv_accuracy_mean": float(np.mean(cv_acc)) if cv_acc else None,
            "seed_design_ties": seed_ties,
            "seed_design_tested": tested,
        }
        rows.append(row)
        acc = row["accuracy"]
        log(f"{label:>5}: bt {acc['bt']['mean']:.3f}±{acc['bt']['std']:.3f}  previous "
            f"{acc['bt_previous']['mean']:.3f}  seed {acc['seed']['mean']:.3f}  shorter "
            f"{acc['shorter']['mean']:.3f}  C {statistics.median(chosen_c):g} "
            f"({time.perf_counter() - started:.1f} s)")
    return rows


def ablation(data: Data, seeds: Sequence[int], embedder: Embedder) -> list[dict[str, Any]]:
    """Feature blocks and scaling at the half split (same splits for every variant)."""
    n = len(data.pairs)
    out: list[dict[str, Any]] = []
    for name, features, scaling in ABLATIONS:
        accs: list[float] = []
        cs: list[float] = []
        for seed in seeds:
            perm = np.random.default_rng(seed).permutation(n)
            base = TrainConfig() if scaling == "block" else previous_config()
            cfg = replace(base, features=features)
            margins, metrics = bt_margins(data, perm[: n // 2], perm[n // 2:], cfg, embedder)
            accs.append(pairwise_accuracy(margins))
            cs.append(metrics["c"])
        out.append({"name": name, "features": list(features), "scaling": scaling,
                    "accuracy": _mean_std(accs), "per_seed": accs, "chosen_c": cs})
        log(f"ablation {name}: {np.mean(accs):.3f}±{np.std(accs):.3f}")
    return out


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


# ---------------------------------------------------------------------------- timings


class _TiledEmbedder(Embedder):
    """Serves precomputed vectors (real ones tiled with small noise): 10k synthetic pairs."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.table = table
        self._id = "tiled-real-vectors"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The stored vector of each text."""
        return np.stack([self.table[t] for t in texts])


def synthetic_pairs(data: Data, embedder: Embedder, count: int
                    ) -> tuple[list[PreferencePair], _TiledEmbedder]:
    """``count`` pairs: real pairs repeated with a copy tag, vectors perturbed (σ = 0.02)."""
    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}
    out: list[PreferencePair] = []
    copy = 0
    while len(out) < count:
        for p in data.pairs[: count - len(out)]:
            tag = f" (copy {copy})"
            texts = (p.prompt_text + tag, p.chosen + tag, p.rejected + tag)
            base = embedder.embed([p.prompt_text, p.chosen, p.rejected])
            for text, vec in zip(texts, base, strict=True):
                noisy = vec + rng.normal(0.0, 0.02, vec.shape).astype(np.float32)
                table[text] = noisy / np.linalg.norm(noisy)
            out.append(PreferencePair(prompt=(Message("user", texts[0]),), chosen=texts[1],
                                      rejected=texts[2]))
        copy += 1
    return out, _TiledEmbedder(table)


def _times(fn: Callable[[], object], repeats: int) -> list[float]:
    times: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(_times(fn, repeats))


def timings(data: Data, cache_path: Path, quick: bool) -> dict[str, Any]:
    """Embedding throughput, train() time, score latency."""
    out: dict[str, Any] = {"load_average_before": list(os.getloadavg())}
    repeats = 2 if quick else 5

    cold = Embedder()  # no persistent cache
    started = time.perf_counter()
    cold.load()
    out["embedder_load_s"] = time.perf_counter() - started
    out["max_seq_length"] = cold.max_seq_length
    import torch

    out["torch_threads"] = torch.get_num_threads()
    cold.embed(["warm-up: the first call pays one-off set-up", "second warm-up text"])
    k, rounds = (50, 1) if quick else (100, 3)
    rates: list[float] = []
    total = 0
    for r in range(rounds):  # distinct texts each round, so nothing comes from memory
        part = data.pairs[r * k : (r + 1) * k]
        texts = list(dict.fromkeys(t for p in part for t in (p.prompt_text, p.chosen,
                                                              p.rejected)))
        started = time.perf_counter()
        cold.embed(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
        total += len(texts)
    out["embedding"] = {"texts": total, "rounds": rounds, "texts_per_s": statistics.median(rates),
                        "texts_per_s_rounds": rates,
                        "what": f"last user turn, chosen and rejected of {k} real pairs"}
    log(f"embedding: {statistics.median(rates):.0f} texts/s ({[round(x) for x in rates]})")

    def fresh() -> Embedder:
        return Embedder(cache=SqliteEmbeddingCache(cache_path))

    thousand = data.pairs[:1000]
    out["train_1k_s"] = _median_time(lambda: train(thousand, TrainConfig(), fresh()), repeats)
    out["train_1k_previous_s"] = _median_time(
        lambda: train(thousand, previous_config(), fresh()), repeats)
    big, tiled = synthetic_pairs(data, fresh(), 10_000)
    out["train_10k_s"] = _median_time(lambda: train(big, TrainConfig(), tiled),
                                      1 if quick else 3)
    log(f"train: 1k {out['train_1k_s']:.2f} s (previous defaults "
        f"{out['train_1k_previous_s']:.2f} s), 10k synthetic {out['train_10k_s']:.2f} s")

    model = train(data.pairs, TrainConfig(), fresh()).model
    assert model.weights is not None
    warm_emb = fresh()
    model.embedder = warm_emb
    prompt, replies = data.pairs[0].prompt_text, [
        data.pairs[0].chosen, data.pairs[0].rejected, data.pairs[1].chosen, data.pairs[1].rejected]
    model.score(prompt, replies)
    out["score4_warm_memory_ms"] = 1000 * _median_time(lambda: model.score(prompt, replies), 50)

    def from_sqlite() -> None:
        model.embedder = fresh()
        model.score(prompt, replies)

    out["score4_warm_sqlite_ms"] = 1000 * _median_time(from_sqlite, 20)

    model.embedder = cold  # network loaded, no persistent cache; each round new texts
    counter = iter(range(1000))

    def never_seen() -> None:
        i = next(counter)
        p = data.pairs[300 + 2 * i]
        q = data.pairs[301 + 2 * i]
        model.score(p.prompt_text, [p.chosen, p.rejected, q.chosen, q.rejected])

    cold_times = _times(never_seen, 10 if quick else 30)
    out["score4_cold_ms"] = 1000 * statistics.median(cold_times)
    out["score4_cold_best_ms"] = 1000 * min(cold_times)
    log(f"score 4 replies: warm {out['score4_warm_memory_ms']:.2f} ms, sqlite "
        f"{out['score4_warm_sqlite_ms']:.1f} ms, cold {out['score4_cold_ms']:.0f} ms")
    out["final_model_metrics"] = model.metrics
    out["load_average_after"] = list(os.getloadavg())
    return out


# ---------------------------------------------------------------------------- report


def _fmt(acc: dict[str, float]) -> str:
    return f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f}"


def markdown(result: dict[str, Any]) -> str:
    """The docs/benchmarks.md section."""
    lc = result["learning_curve"]
    t = result["timings"]
    cfg = result["defaults"]
    seeds = len(result["seeds"])
    lines = [
        "## Reward model quality on real human preferences",
        "",
        f"Data: `../shared/data/hh-harmless-dev.jsonl`, {result['pairs']} HH-RLHF harmless "
        "pairs (human-labelled; never copied into the project). Pairwise accuracy = share of "
        "held-out pairs whose chosen reply scores higher (a tie counts as half). Mean ± std "
        f"over {seeds} random splits; each size trains on n pairs and tests on all the rest; "
        "*half* trains on 574 and tests on 575; *all* is 5-fold cross-fitting (trains on "
        "919, every pair tested once). Every method sees the same splits.",
        "",
        "- **Bradley-Terry (default)**: `train()` with the default `TrainConfig`: features "
        f"`{', '.join(cfg['features'])}`, {cfg['scaling']} scaling, C by {cfg['folds']}-fold "
        f"CV over {cfg['c_grid']} (default {cfg['default_c']} below "
        f"{cfg['min_pairs_for_c_search']} pairs).",
        "- **previous defaults**: reply, prompt×reply, length; per-column RMS scaling; C grid "
        "1e-5 … 0.1.",
        "- **seed design**: scikit-learn `LogisticRegression` on the embedding of "
        "`prompt + reply` (whole transcript; MiniLM reads at most "
        f"{t['max_seq_length']} tokens), pointwise labels, score = `predict_proba`.",
        "- **prefer shorter**: fewer words wins; no training.",
        "",
        "| train pairs | test pairs | Bradley-Terry (default) | previous defaults | seed "
        "design | prefer shorter | CV-chosen C (median) | seed-design exact ties (all splits) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in lc:
        acc = row["accuracy"]
        label = {"half": "574 (half)", "all": "919 (all, 5-fold)"}.get(row["label"],
                                                                    row["label"])
        ties = f"{row['seed_design_ties']} of {row['seed_design_tested']}"
        lines.append(
            f"| {label} | {row['test_pairs']} | **{_fmt(acc['bt'])}** | "
            f"{_fmt(acc['bt_previous'])} | {_fmt(acc['seed'])} | {_fmt(acc['shorter'])} | "
            f"{statistics.median(row['chosen_c']):g} | {ties} |")
    lines += [
        "",
        f"On all {result['pairs']} pairs the seed design's two texts embed identically (the "
        f"reply is cut off) for {result['seed_identical_pairs']} pairs: an exact tie whatever "
        "it learns.",
        "",
        "Ablation at the half split (same splits; C by CV; block scaling = every feature "
        "block scaled to unit RMS difference norm, so the one length column is not drowned "
        "by 384 embedding columns):",
        "",
        "| features | scaling | accuracy % | CV-chosen C (median) |",
        "|---|---|---|---|",
    ]
    for a in result["ablation"]:
        lines.append(f"| {a['name']} | {a['scaling']} | {_fmt(a['accuracy'])} | "
                     f"{statistics.median(a['chosen_c']):g} |")
    fm = t["final_model_metrics"]
    lines += [
        "",
        f"Trained on all {result['pairs']} pairs with the defaults: C = {fm['c']:g}, "
        f"{fm['folds']}-fold CV accuracy {100 * fm['cv_accuracy']:.1f} % "
        f"(± {100 * fm['cv_accuracy_std']:.1f} across folds).",
        "",
        "Timings (median of repeats) on 2 CPU cores shared with other jobs: 1-minute load "
        f"average {t['load_average_before'][0]:.1f} before and "
        f"{t['load_average_after'][0]:.1f} after, so treat them as upper bounds; the best "
        f"round shows what a quiet moment gives. torch used {t['torch_threads']} thread(s):",
        "",
        "| what | time |",
        "|---|---|",
        f"| embed, no cache ({t['embedding']['what']}) | "
        f"{t['embedding']['texts_per_s']:.0f} texts/s (median of "
        f"{t['embedding']['rounds']} rounds, {t['embedding']['texts']} texts; best "
        f"{max(t['embedding']['texts_per_s_rounds']):.0f}) |",
        f"| load the embedder (once per process) | {t['embedder_load_s']:.1f} s |",
        f"| `train()` with CV, 1,000 real pairs, embeddings cached | {t['train_1k_s']:.2f} s "
        f"(previous features and C grid: {t['train_1k_previous_s']:.2f} s) |",
        f"| `train()` with CV, 10,000 synthetic pairs (real vectors tiled + noise) | "
        f"{t['train_10k_s']:.2f} s |",
        f"| `score` 4 replies, texts in the in-memory cache | "
        f"{t['score4_warm_memory_ms']:.2f} ms |",
        f"| `score` 4 replies, texts only in the SQLite cache | "
        f"{t['score4_warm_sqlite_ms']:.1f} ms |",
        f"| `score` 4 replies, texts never seen (embedder loaded) | "
        f"{t['score4_cold_ms']:.0f} ms (best {t['score4_cold_best_ms']:.0f} ms) |",
        "",
        f"Measured {result['date']}. Reproduce: `.venv/bin/python -m benchmarks.reward_quality`"
        " (`--quick`: 2 seeds). JSON: `benchmarks/results/reward_quality.json`.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write the JSON and the docs section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 seeds, fewer repeats")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="SQLite embedding cache kept between runs")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads(N) before timing (default: torch's own)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; leave docs/ and benchmarks/results/ alone")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    embedder = Embedder(cache=SqliteEmbeddingCache(args.cache))
    data = load_data(args.data, embedder)
    identical = int(np.sum(np.all(data.seed_chosen == data.seed_rejected, axis=1)))
    curve = learning_curve(data, seeds, embedder)
    abl = ablation(data, seeds, embedder)
    times = timings(data, args.cache, args.quick)
    cfg = TrainConfig()
    result: dict[str, Any] = {
        "data": str(args.data.name),
        "pairs": len(data.pairs),
        "seeds": seeds,
        "date": time.strftime("%Y-%m-%d"),
        "defaults": {"features": list(cfg.features), "scaling": cfg.scaling,
                     "c_grid": list(cfg.c_grid), "default_c": cfg.default_c,
                     "folds": cfg.folds, "min_pairs_for_c_search": cfg.min_pairs_for_c_search,
                     "tol": cfg.tol},
        "previous_defaults": asdict(previous_config()),
        "seed_identical_pairs": identical,
        "learning_curve": curve,
        "ablation": abl,
        "timings": times,
    }
    if args.no_write:
        print(markdown(result))
        return 0
    write_json("reward_quality", result)
    update_section("reward_quality", markdown(result))
    log("wrote benchmarks/results/reward_quality.json and docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
