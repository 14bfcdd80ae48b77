"""A lean runner for BERT-family sentence-transformers folders (all-MiniLM-L6-v2 among them).

It runs the folder on numpy alone: the folder's own ``tokenizer.json`` (``tokenizers``), its
``model.safetensors`` weights (``safetensors``' numpy loader), the ``max_seq_length`` of
``sentence_bert_config.json``, mean pooling as ``1_Pooling/config.json`` asks and the
``Normalize`` module of ``modules.json``. No torch, transformers or sentence-transformers is
imported: the window and the command line embed without them (``tests/test_lean_runtime.py``),
and ``import sentence_transformers`` alone costs ~400 MiB of resident memory and seconds.

The network is BERT as written in ``transformers``: word + position + token-type embeddings
and LayerNorm, then per layer self-attention (one fused Q/K/V matmul, softmax over the
unpadded keys), output projection, residual and LayerNorm, a GELU (the exact erf form)
feed-forward layer, residual and LayerNorm. All float32; texts are sorted by length and run in
batches padded to their longest text, so the matmuls go to numpy's BLAS in large blocks and no
Python loop runs over tokens. ``benchmarks/embedding.py`` measures it beside torch.

Memory: the word-embedding table (30,522 × 384 float32, 47 MiB: half the weights) is mapped
read-only from ``model.safetensors`` instead of copied (:func:`map_tensor`), so only the pages
of rows that texts actually use become resident, as clean file pages the kernel can drop and
share; the other weights are read one tensor at a time (``safe_open``) into the layouts the
matmuls want, so the whole file is never held in memory at once. The values are the file's,
bit for bit, as before.

It accepts only folders it can run exactly (:func:`supports` says why not otherwise); every
other folder goes through ``SentenceTransformer``. The test suite checks that both give the
same vectors on real texts (``tests/test_embedder_backends.py``).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODULE_TRANSFORMER = "sentence_transformers.models.Transformer"
MODULE_POOLING = "sentence_transformers.models.Pooling"
MODULE_NORMALIZE = "sentence_transformers.models.Normalize"
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def supports(folder: Path) -> str | None:
    """None when :class:`BertEncoder` runs ``folder`` exactly; otherwise the reason it cannot."""
    try:
        modules = _read_json(folder / "modules.json")
        config = _read_json(folder / "config.json")
    except (OSError, ValueError) as exc:
        return f"no readable modules.json/config.json ({exc})"
    kinds = [m.get("type", "") for m in modules] if isinstance(modules, list) else []
    if kinds not in ([MODULE_TRANSFORMER, MODULE_POOLING],
                     [MODULE_TRANSFORMER, MODULE_POOLING, MODULE_NORMALIZE]):
        return f"modules {kinds} are not Transformer + Pooling (+ Normalize)"
    if modules[0].get("path", "") not in ("", "."):
        return "the transformer is not at the folder's top level"
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
        return f"model_type {config.get('model_type')!r} is not a gelu BERT"
    if config.get("position_embedding_type", "absolute") != "absolute":
        return "position embeddings are not absolute"
    for name in ("tokenizer.json", "model.safetensors"):
        if not (folder / name).exists():
            return f"{name} is missing"
    try:
        pooling = _read_json(folder / modules[1].get("path", "1_Pooling") / "config.json")
    except (OSError, ValueError) as exc:
        return f"no readable pooling config ({exc})"
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        return f"pooling {sorted(modes)} is not mean pooling"
    try:
        sbert = _read_json(folder / "sentence_bert_config.json")
    except (OSError, ValueError):
        sbert = {}
    if sbert.get("do_lower_case"):
        return "do_lower_case is set (a tokenizer override this runner does not apply)"
    return None


# The stored dtypes mapped as they are: float32, and float16 (the desktop bundle stores the
# matrices as float16; rows are converted to float32 when looked up).
_MAPPED_DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}


def map_tensor(path: Path, name: str) -> np.ndarray | None:
    """A read-only float32 (or float16) view of tensor ``name`` of a ``.safetensors`` file,
    mapped from the file (``np.memmap``), or None when it is not a little-endian float32 or
    float16 tensor there.

    The file's layout: an 8-byte little-endian header size, a JSON header giving each
    tensor's dtype, shape and byte range, then the data (``safetensors``' format)."""
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    info = header.get(name)
    if not isinstance(info, dict) or info.get("dtype") not in _MAPPED_DTYPES:
        return None
    dtype = _MAPPED_DTYPES[info["dtype"]]
    shape = tuple(int(n) for n in info["shape"])
    start, end = (int(n) for n in info["data_offsets"])
    if end - start != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"{path}: the byte range of {name} does not match its shape")
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=8 + size + start, shape=shape)
    return np.asarray(mapped)  # a plain ndarray view; its base keeps the mapping alive


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights, laid out for ``x @ w`` (float32, contiguous)."""

    qkv: np.ndarray  # (dim, 3 * dim): query, key and value projections side by side
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    ln1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    ln2: tuple[np.ndarray, np.ndarray]


class BertEncoder:
    """Mean-pooled (and, as the folder says, L2-normalised) BERT sentence embeddings."""

    def __init__(self, folder: Path, normalize: bool | None = None,
                 threads: int | None = None) -> None:
        """Load ``folder``; ``normalize`` None follows its ``Normalize`` module; ``threads``
        caps the BLAS pool (None: :func:`default_threads`, 0: leave it as it is)."""
        from safetensors import safe_open
        from tokenizers import Tokenizer

        reason = supports(folder)
        if reason is not None:
            raise ValueError(f"{folder}: {reason}")
        config = _read_json(folder / "config.json")
        modules = _read_json(folder / "modules.json")
        try:
            sbert = _read_json(folder / "sentence_bert_config.json")
        except (OSError, ValueError):
            sbert = {}
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dim = int(config["hidden_size"])
        self.normalize = len(modules) == 3 if normalize is None else normalize
        positions = int(config.get("max_position_embeddings", 512))
        self.max_len = min(int(sbert.get("max_seq_length") or positions), positions)

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_len)
        path = folder / "model.safetensors"
        with safe_open(str(path), framework="numpy") as weights:
            self._load_weights(path, weights)
        if threads is None:
            threads = default_threads()
        if threads:
            limit_blas_threads(threads)

    def _load_weights(self, path: Path, weights: Any) -> None:
        """The network's arrays from the open ``safe_open`` handle ``weights`` of ``path``."""
        prefix = "bert." if "bert." + WORD_EMBEDDINGS in weights.keys() else ""

        def get(name: str) -> np.ndarray:
            return np.ascontiguousarray(weights.get_tensor(prefix + name), dtype=np.float32)

        def linear(name: str) -> tuple[np.ndarray, np.ndarray]:  # (in, out) for x @ w
            return np.ascontiguousarray(get(name + ".weight").T), get(name + ".bias")

        def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
            return get(name + ".weight"), get(name + ".bias")

        mapped = map_tensor(path, prefix + WORD_EMBEDDINGS)
        self.word = get(WORD_EMBEDDINGS) if mapped is None else mapped
        self.position = get("embeddings.position_embeddings.weight")
        self.token_type = get("embeddings.token_type_embeddings.weight")[0]
        self.embed_norm = norm("embeddings.LayerNorm")
        self.blocks: list[_Layer] = []
        for n in range(self.layers):
            p = f"encoder.layer.{n}."
            parts = [linear(p + f"attention.self.{name}") for name in ("query", "key", "value")]
            out, out_bias = linear(p + "attention.output.dense")
            up, up_bias = linear(p + "intermediate.dense")
            down, down_bias = linear(p + "output.dense")
            self.blocks.append(_Layer(
                qkv=np.ascontiguousarray(np.concatenate([w for w, _ in parts], axis=1)),
                qkv_bias=np.concatenate([b for _, b in parts]),
                out=out, out_bias=out_bias, ln1=norm(p + "attention.output.LayerNorm"),
                up=up, up_bias=up_bias, down=down, down_bias=down_bias,
                ln2=norm(p + "output.LayerNorm")))

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """One row per text, in order (float32)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([t.strip() for t in texts])
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):  # one row per text, a C-level copy each
                ids[r, :lengths[i]] = encodings[i].ids
            mask = np.arange(width)[None, :] < lengths[rows][:, None]
            out[rows] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled vectors of a padded batch: ``ids`` (batch, width), ``mask`` True on tokens."""
        batch, width = ids.shape
        heads, dim = self.heads, self.dim
        head_dim = dim // heads
        x = self.word[ids].astype(np.float32, copy=False)  # a float16 table's rows, converted
        x += self.position[:width]
        x += self.token_type
        x = _layer_norm(x.reshape(batch * width, dim), self.embed_norm, self.eps)
        # 0 on a real key, -inf on padding: padded keys get no attention weight.
        key_bias = np.where(mask, np.float32(0.0), np.float32(-np.inf))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for layer in self.blocks:
            qkv = x @ layer.qkv
            qkv += layer.qkv_bias
            # (batch, width, 3, heads, head_dim) -> 3 x (batch, heads, width, head_dim), one
            # copy: contiguous heads make the batched matmuls below ~2x faster than views.
            q, k, v = np.ascontiguousarray(
                qkv.reshape(batch, width, 3, heads, head_dim).transpose(2, 0, 3, 1, 4))
            scores = np.matmul(q, k.transpose(0, 1, 3, 2))
            scores *= scale
            scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = np.matmul(scores, v).transpose(0, 2, 1, 3).reshape(batch * width, dim)
            attended = context @ layer.out
            attended += layer.out_bias
            attended += x
            x = _layer_norm(attended, layer.ln1, self.eps)
            hidden = x @ layer.up
            hidden += layer.up_bias
            hidden = _gelu(hidden)
            down = hidden @ layer.down
            down += layer.down_bias
            down += x
            x = _layer_norm(down, layer.ln2, self.eps)
        weights = mask.astype(np.float32)[:, :, None]
        summed = (x.reshape(batch, width, dim) * weights).sum(axis=1)
        pooled = summed / np.maximum(weights.sum(axis=1), np.float32(1e-9))
        if self.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled /= np.maximum(norms, np.float32(1e-12))
        return pooled.astype(np.float32, copy=False)


def _layer_norm(x: np.ndarray, params: tuple[np.ndarray, np.ndarray], eps: float) -> np.ndarray:
    """LayerNorm over the last axis (in place on ``x``, which the caller gives up)."""
    weight, bias = params
    x -= x.mean(axis=-1, keepdims=True)
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + np.float32(eps))
    x *= weight
    x += bias
    return x


# Abramowitz & Stegun 7.1.26: |erf error| < 1.5e-7, below float32's resolution of GELU's
# output (max |error| of the GELU 4.6e-7 on [-8, 8], the same as scipy's float32 erf), and
# ~1.6x faster than scipy.special.erf, which computes float32 input in double precision.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                       1.061405429))


_GELU_ROWS = 64
"""Rows of the feed-forward layer computed per GELU step: ~400 KB a scratch array, so the
dozen elementwise passes stay in the CPU cache (2x faster than whole-array passes)."""


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's GELU, ``x * Phi(x)`` with the exact (erf) form, of a 2-D float32 array (a new
    array), ``_GELU_ROWS`` rows at a time."""
    out = np.empty_like(x)
    scratch = np.empty((3, min(_GELU_ROWS, x.shape[0]), x.shape[1]), dtype=np.float32)
    a1, a2, a3, a4, a5 = _ERF_A
    for start in range(0, x.shape[0], _GELU_ROWS):
        xs = x[start:start + _GELU_ROWS]
        n = xs.shape[0]
        z, t, y = scratch[0, :n], scratch[1, :n], scratch[2, :n]
        np.multiply(xs, np.float32(1.0 / np.sqrt(2.0)), out=z)  # erf(z), z = x / sqrt(2)
        np.abs(z, out=t)
        np.multiply(t, _ERF_P, out=t)
        t += np.float32(1.0)
        np.reciprocal(t, out=t)
        np.multiply(t, a5, out=y)
        for coefficient in (a4, a3, a2, a1):  # Horner's rule
            y += coefficient
            y *= t
        np.square(z, out=t)
        np.negative(t, out=t)
        np.exp(t, out=t)
        y *= t
        np.subtract(np.float32(1.0), y, out=y)
        np.copysign(y, z, out=y)  # erf(z)
        y += np.float32(1.0)
        y *= xs
        np.multiply(y, np.float32(0.5), out=out[start:start + n])
    return out


def default_threads() -> int:
    """Threads for the matmuls: all cores but one, at most 4 (``RLHF_DESKTOP_EMBEDDER_THREADS``,
    or the older ``RLHF_DESKTOP_TORCH_THREADS``)."""
    for name in ("RLHF_DESKTOP_EMBEDDER_THREADS", "RLHF_DESKTOP_TORCH_THREADS"):
        override = os.environ.get(name, "")
        if override.isdigit() and int(override) > 0:
            return int(override)
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def limit_blas_threads(threads: int) -> bool:
    """Cap the BLAS pools (numpy's OpenBLAS) at ``threads``; False when that failed.

    OpenBLAS starts a thread per core for every matmul. On a busy machine (the UI thread,
    llama.cpp, other programs) those threads wait for each other: measured on 2 loaded cores,
    the 384 small attention matmuls of a batch took 10.7 s with the default pool and 0.29 s
    with one thread. Process-wide, as torch's ``set_num_threads`` was.
    """
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    except Exception:  # an unknown BLAS build: keep its default
        return False
    return True
