"""A transformers reward model (``AutoModelForSequenceClassification``, one output) as a ranker.

Made by ``python -m rlhf_desktop.tune`` with ``method: reward`` (TRL's RewardTrainer), or any
such folder. torch and transformers are imported only when a folder is loaded, so importing
this module stays cheap (the fast test tier and the window's start-up never pay for them).

Text goes in exactly as it went in during training (:func:`encode`): the prompt messages and
the reply through the tokenizer's chat template (plain ``User:``/``Assistant:`` lines for a
model without one), cut from the left to ``max_length`` tokens so the reply is what is kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

META_FILE = "ranker.json"
"""Written beside the model: base, pairs, steps, held-out accuracy, max_length."""
TRAIN_KEYS_FILE = "train-keys.json"
"""The :func:`rlhf_desktop.reward.model.pair_key` of every pair it was trained on."""
DEFAULT_MAX_LENGTH = 256

Messages = list[dict[str, str]]


class RankerLoadError(RuntimeError):
    """A folder that is not a usable reward model; the message says why and what to do."""


def as_messages(prompt: str | Sequence[dict[str, str]]) -> Messages:
    """A prompt as chat messages (a bare string is one user message)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def encode(tokenizer: Any, prompt: str | Sequence[dict[str, str]], reply: str,
           max_length: int) -> tuple[list[int], bool]:
    """Token ids of ``prompt`` + ``reply`` and whether the start had to be cut."""
    messages = [*as_messages(prompt), {"role": "assistant", "content": reply}]
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
        ids = list(out["input_ids"])
    else:
        text = "\n\n".join(f"{'User' if m['role'] == 'user' else m['role'].title()}: "
                           f"{m['content']}" for m in messages)
        ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(int(tokenizer.eos_token_id))
    if len(ids) <= max_length:
        return ids, False
    return ids[-max_length:], True


def read_meta(folder: Path) -> dict[str, Any]:
    """The folder's ``ranker.json`` ({} when absent or unreadable)."""
    try:
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_train_keys(folder: Path) -> frozenset[str]:
    """The pair keys the ranker was trained on (empty when the folder does not say)."""
    try:
        keys = json.loads((folder / TRAIN_KEYS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    return frozenset(str(k) for k in keys) if isinstance(keys, list) else frozenset()


def check_folder(folder: str | Path) -> Path:
    """The folder as a Path, or RankerLoadError saying what is wrong (no torch needed)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise RankerLoadError(f"the ranker folder {path} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise RankerLoadError(f"{path} is not a transformers model folder (no config.json); "
                              f"train one with `method: reward` (docs/scale-out.md)")
    try:
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RankerLoadError(f"{config_file} is not readable JSON: {exc}") from exc
    archs = [str(a) for a in cfg.get("architectures") or []]
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise RankerLoadError(f"{path} holds a {archs[0]}, not a reward model (a "
                              f"…ForSequenceClassification with one output)")
    labels = cfg.get("num_labels", len(cfg.get("id2label") or {}) or None)
    if labels not in (None, 1):
        raise RankerLoadError(f"{path} has {labels} outputs; a reward model has exactly one")
    return path


@dataclass
class HFRanker:
    """A loaded reward model: one scalar per (prompt, reply), higher is better."""

    folder: Path
    model: Any
    tokenizer: Any
    max_length: int
    meta: dict[str, Any] = field(default_factory=dict)
    train_keys: frozenset[str] = field(default_factory=frozenset, repr=False)
    load_seconds: float = 0.0
    batch_size: int = 4

    @staticmethod
    def load(folder: str | Path, threads: int = 0) -> HFRanker:
        """Load a folder (seconds; call from a worker thread). Raises RankerLoadError."""
        path = check_folder(folder)
        started = time.monotonic()
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise RankerLoadError(f"a transformers ranker needs torch and transformers "
                                  f"(pip install -e '.[tune]'): {exc}") from exc
        if threads:
            torch.set_num_threads(threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), num_labels=1, dtype=inference_dtype(torch))
        except Exception as exc:  # safetensors, config and shape errors alike
            raise RankerLoadError(f"{path} could not be loaded as a reward model "
                                  f"({type(exc).__name__}: {exc}); choose another ranker or "
                                  f"train it again") from exc
        model.eval()
        if torch.cuda.is_available():  # a GPU machine measuring its held-out pairs
            model.to("cuda")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        meta = read_meta(path)
        max_length = int(meta.get("max_length") or DEFAULT_MAX_LENGTH)
        return HFRanker(path, model, tokenizer, max_length, meta, read_train_keys(path),
                        time.monotonic() - started)

    @property
    def name(self) -> str:
        """Short name for people: the folder's name (``r0003``) and its base."""
        base = self.meta.get("base", {}).get("name") if isinstance(self.meta.get("base"),
                                                                    dict) else None
        return f"{self.folder.name} ({base})" if base else self.folder.name

    def score(self, prompt: str | Sequence[dict[str, str]], replies: Sequence[str]
              ) -> list[float]:
        """One score per reply (call from a worker thread)."""
        return self.score_many([(prompt, r) for r in replies])

    def score_many(self, items: Sequence[tuple[str | Sequence[dict[str, str]], str]]
                   ) -> list[float]:
        """Scores of (prompt, reply) items, in batches of ``batch_size``."""
        import torch

        encoded = [encode(self.tokenizer, p, r, self.max_length)[0] for p, r in items]
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else int(pad)
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), self.batch_size):
                chunk = encoded[start:start + self.batch_size]
                width = max(len(ids) for ids in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, seq in enumerate(chunk):  # right padding, as in training
                    ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, :len(seq)] = 1
                device = self.model.device
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    use_cache=False).logits
                out.extend(float(v) for v in logits.reshape(-1).tolist())
        return out


def pairwise_accuracy(margins: Sequence[float]) -> float | None:
    """Share of pairs scored chosen > rejected (a tie counts half); None for none."""
    if not margins:
        return None
    wins = sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins)
    return wins / len(margins)


def p_better(margin: float) -> float:
    """P(first ≻ second) under the Bradley-Terry loss the reward model was trained with."""
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, margin))))


def inference_dtype(torch: Any) -> Any:
    """bf16 where the CPU computes it natively (AVX512-BF16/AMX: about twice as fast as fp32
    here, and the saved weights are bf16 anyway), else fp32; ``RLHF_DESKTOP_RANKER_DTYPE``
    (``float32``/``bfloat16``) overrides."""
    wanted = os.environ.get("RLHF_DESKTOP_RANKER_DTYPE", "")
    if wanted in ("float32", "bfloat16"):
        return getattr(torch, wanted)
    if torch.cuda.is_available():
        return torch.bfloat16
    try:
        native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private helpers of torch 2.x
        native = False
    return torch.bfloat16 if native else torch.float32


def default_threads() -> int:
    """Half the cores, at least one (the rest stay free for the window and llama.cpp)."""
    return max(1, (os.cpu_count() or 2) // 2)
