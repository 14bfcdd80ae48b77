"""A lean runner for BERT-family sentence-transformers folders (all-MiniLM-L6-v2 among them).

``import sentence_transformers`` brings in transformers, scikit-learn, pandas and more: about
400 MiB of resident memory in a process that needs none of them to embed with MiniLM (measured
in ``benchmarks/app_perf.py``). This module runs the same sentence-transformers folder with
torch, ``tokenizers`` and ``safetensors`` alone: the folder's own ``tokenizer.json``, its
``model.safetensors`` weights, the ``max_seq_length`` of ``sentence_bert_config.json``, mean
pooling as ``1_Pooling/config.json`` asks and the ``Normalize`` module of ``modules.json``.

It accepts only folders it can run exactly (:func:`supports` says why not otherwise); every
other folder goes through ``SentenceTransformer``. The test suite checks that both give the
same vectors on real texts (``tests/test_embedder_backends.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

MODULE_TRANSFORMER = "sentence_transformers.models.Transformer"
MODULE_POOLING = "sentence_transformers.models.Pooling"
MODULE_NORMALIZE = "sentence_transformers.models.Normalize"


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


class BertEncoder:
    """Mean-pooled (and, as the folder says, L2-normalised) BERT sentence embeddings."""

    def __init__(self, folder: Path, normalize: bool | None = None) -> None:
        """Load ``folder``; ``normalize`` None follows its ``Normalize`` module."""
        import torch
        from safetensors.torch import load_file
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
        weights = load_file(str(folder / "model.safetensors"), device="cpu")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        self.w: dict[str, torch.Tensor] = {
            k[len(prefix):]: v.float() for k, v in weights.items()
            if k.startswith(prefix) and not k.endswith("position_ids")
        }
        self._torch = torch

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """One row per text, in order (float32)."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([t.strip() for t in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                width = max(len(encodings[i].ids) for i in rows)
                ids = torch.zeros((len(rows), width), dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.bool)
                for r, i in enumerate(rows):
                    n = len(encodings[i].ids)
                    ids[r, :n] = torch.tensor(encodings[i].ids, dtype=torch.long)
                    mask[r, :n] = True
                vectors = self._forward(ids, mask)
                out[rows] = vectors.numpy()
        return out

    def _forward(self, ids: Any, mask: Any) -> Any:
        torch = self._torch
        f = torch.nn.functional
        w = self.w
        batch, width = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:width].unsqueeze(0)
             + w["embeddings.token_type_embeddings.weight"][0])
        x = f.layer_norm(x, (self.dim,), w["embeddings.LayerNorm.weight"],
                         w["embeddings.LayerNorm.bias"], self.eps)
        head_dim = self.dim // self.heads
        attend = mask[:, None, None, :]
        for n in range(self.layers):
            p = f"encoder.layer.{n}."

            def lin(x: Any, name: str, p: str = p) -> Any:
                return f.linear(x, w[p + name + ".weight"], w[p + name + ".bias"])

            def split(t: Any) -> Any:
                return t.view(batch, width, self.heads, head_dim).transpose(1, 2)

            q = split(lin(x, "attention.self.query"))
            k = split(lin(x, "attention.self.key"))
            v = split(lin(x, "attention.self.value"))
            a = f.scaled_dot_product_attention(q, k, v, attn_mask=attend,
                                               scale=1.0 / math.sqrt(head_dim))
            a = a.transpose(1, 2).reshape(batch, width, self.dim)
            x = f.layer_norm(x + lin(a, "attention.output.dense"), (self.dim,),
                             w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = f.gelu(lin(x, "intermediate.dense"))
            x = f.layer_norm(x + lin(h, "output.dense"), (self.dim,),
                             w[p + "output.LayerNorm.weight"],
                             w[p + "output.LayerNorm.bias"], self.eps)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = f.normalize(pooled, p=2.0, dim=1)
        return pooled
