"""Timings of the reward model: embedding, ``train()`` at 1k and 10k pairs, ``score`` latency.

Used by ``benchmarks/reward_quality.py``; the figures go into its docs section.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.training import TrainConfig, train
from rlhf_desktop.storage.embcache import SqliteEmbeddingCache


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


class _TiledEmbedder(Embedder):
    """Serves precomputed vectors (real ones tiled with small noise): 10k synthetic pairs."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.table = table
        self._id = "tiled-real-vectors"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The stored vector of each text."""
        return np.stack([self.table[t] for t in texts])


def synthetic_pairs(pairs: Sequence[PreferencePair], embedder: Embedder, count: int
                    ) -> tuple[list[PreferencePair], _TiledEmbedder]:
    """``count`` pairs: real pairs repeated with a copy tag, vectors perturbed (σ = 0.02)."""
    rng = np.random.default_rng(0)
    table: dict[str, np.ndarray] = {}
    out: list[PreferencePair] = []
    copy = 0
    while len(out) < count:
        for p in pairs[: count - len(out)]:
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


def timings(pairs: Sequence[PreferencePair], cache_path: Path, quick: bool,
            configs: dict[str, TrainConfig]) -> dict[str, Any]:
    """Embedding throughput, train() time per config (1k real, 10k synthetic), score latency."""
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
        part = pairs[r * k : (r + 1) * k]
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

    thousand = pairs[:1000]
    big, tiled = synthetic_pairs(pairs, fresh(), 10_000)
    out["train_1k_s"] = {}
    out["train_10k_s"] = {}
    for name, cfg in configs.items():
        def on_1k(c: TrainConfig = cfg) -> object:
            return train(thousand, c, fresh())

        def on_10k(c: TrainConfig = cfg) -> object:
            return train(big, c, tiled)

        out["train_1k_s"][name] = _median_time(on_1k, repeats)
        out["train_10k_s"][name] = _median_time(on_10k, 1 if quick else 2)
        log(f"train {name}: 1k {out['train_1k_s'][name]:.2f} s, 10k synthetic "
            f"{out['train_10k_s'][name]:.2f} s")

    model = train(pairs, TrainConfig(), fresh()).model
    assert model.weights is not None
    warm_emb = fresh()
    model.embedder = warm_emb
    prompt, replies = pairs[0].prompt_text, [
        pairs[0].chosen, pairs[0].rejected, pairs[1].chosen, pairs[1].rejected]
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
        p = pairs[300 + 2 * i]
        q = pairs[301 + 2 * i]
        model.score(p.prompt_text, [p.chosen, p.rejected, q.chosen, q.rejected])

    cold_times = _times(never_seen, 10 if quick else 30)
    out["score4_cold_ms"] = 1000 * statistics.median(cold_times)
    out["score4_cold_best_ms"] = 1000 * min(cold_times)
    log(f"score 4 replies: warm {out['score4_warm_memory_ms']:.2f} ms, sqlite "
        f"{out['score4_warm_sqlite_ms']:.1f} ms, cold {out['score4_cold_ms']:.0f} ms")
    out["final_model_metrics"] = model.metrics
    out["load_average_after"] = list(os.getloadavg())
    return out
