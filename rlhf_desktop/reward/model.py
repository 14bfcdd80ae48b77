"""TinyRewardModel: a Bradley-Terry reward model on MiniLM embeddings.

score(prompt, reply) = w · f(prompt, reply), and P(a preferred over b) = sigmoid(s_a − s_b).
The reply is always embedded on its own, so a long prompt never truncates it away.

Persistence: ``save(dir)`` writes ``reward_model.joblib`` (plain numbers, lists and strings)
and ``reward_model.joblib.sig``, an HMAC-SHA256 of the file's bytes under this installation's
key. ``load(dir)`` verifies the signature *before* unpickling and refuses anything else, so a
file this installation did not write never runs as code.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_desktop import config
from rlhf_desktop.reward import signing
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.style import STYLE_DIM, STYLE_NAMES, style_features

MODEL_FILENAME = "reward_model.joblib"
SIGNATURE_FILENAME = MODEL_FILENAME + ".sig"
FORMAT = "rlhf-desktop/reward-model/1"

# Feature blocks: "reply" (the reply's embedding), "prompt_x_reply" (element-wise product of
# the last user turn's embedding and the reply's: relevance), "length" (log word count),
# "words" (which words the reply uses: binary bag of words hashed into WORDS_DIM buckets,
# unit length). Measured on real HH pairs (benchmarks/reward_quality.py), all four together
# generalise best; "words" adds about 2 points of held-out pairwise accuracy.
# "style" (reward/style.py): named features of a reply's form (log words, headers, lists,
# bold, code blocks, questions, refusal, apology, paragraphs, repetition, unfinished,
# prompt overlap), each column scaled on its own, so its weights read per column.
KNOWN_FEATURES: tuple[str, ...] = ("reply", "prompt_x_reply", "length", "words", "style")
# Measured on three human-labelled sets (benchmarks/reward_quality.py): adding the style block
# to the four earlier blocks beats them at half of every set and at 64 labels on two of three.
DEFAULT_FEATURES: tuple[str, ...] = KNOWN_FEATURES
# What a saved model without a feature list was trained on (the first format).
LEGACY_FEATURES: tuple[str, ...] = ("reply", "prompt_x_reply", "length", "words")
WORDS_DIM = 512
_WORD = re.compile(r"\w\w+")


CONFIDENCE_METRIC = "p-top-vs-second/1"
UNSURE_BELOW = 0.6


class ModelFileError(Exception):
    """A model file that must not or cannot be loaded; the message says why."""


def pair_key(prompt_text: str, a: str, b: str) -> str:
    """Identity of a comparison: the prompt and the two replies, in either order (the one
    ``pair_key``: whether a ranker saw a comparison; import de-duplication uses
    :func:`~rlhf_desktop.core.formats.import_key` instead)."""
    first, second = sorted((a, b))
    raw = "\x00".join((prompt_text, first, second)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:16]


def length_feature(texts: Sequence[str]) -> np.ndarray:
    """log(1 + words) per text, as a column."""
    return np.log1p([len(t.split()) for t in texts]).astype(np.float32).reshape(-1, 1)


def words_feature(texts: Sequence[str], dim: int = WORDS_DIM) -> np.ndarray:
    """Binary bag of lower-cased words (2+ word characters), hashed with CRC-32, unit length.

    Stable across processes and platforms (no salted ``hash()``), so saved weights stay valid.
    """
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        buckets = {zlib.crc32(w.encode("utf-8", "surrogatepass")) % dim
                   for w in _WORD.findall(text.lower())}
        if buckets:
            out[row, list(buckets)] = 1.0 / math.sqrt(len(buckets))
    return out


def block_width(name: str, embedding_dim: int) -> int:
    """How many columns feature block ``name`` takes."""
    if name in ("reply", "prompt_x_reply"):
        return embedding_dim
    if name == "length":
        return 1
    if name == "words":
        return WORDS_DIM
    if name == "style":
        return STYLE_DIM
    raise ValueError(f"unknown feature {name!r}; known: {', '.join(KNOWN_FEATURES)}")


def feature_layout(features: Sequence[str], embedding_dim: int) -> list[tuple[str, slice]]:
    """(block name, its columns) in the order :func:`featurize` lays them out."""
    layout: list[tuple[str, slice]] = []
    start = 0
    for name in features:
        width = block_width(name, embedding_dim)
        layout.append((name, slice(start, start + width)))
        start += width
    return layout


def featurize(
    features: Sequence[str],
    prompt_vecs: np.ndarray,
    reply_vecs: np.ndarray,
    replies: Sequence[str],
    prompts: Sequence[str] | None = None,
) -> np.ndarray:
    """The feature rows of (prompt, reply) pairs; ``prompt_vecs`` broadcast when one row.

    ``prompts``: the last user turn of each row (one string is broadcast), for the style
    block's prompt overlap; None counts as an empty prompt.
    """
    blocks: list[np.ndarray] = []
    for name in features:
        if name == "reply":
            blocks.append(reply_vecs)
        elif name == "prompt_x_reply":
            blocks.append(prompt_vecs * reply_vecs)
        elif name == "length":
            blocks.append(length_feature(replies))
        elif name == "words":
            blocks.append(words_feature(replies))
        elif name == "style":
            if prompts is not None and len(prompts) == 1 and len(replies) != 1:
                prompts = list(prompts) * len(replies)
            blocks.append(style_features(replies, prompts))
        else:
            raise ValueError(f"unknown feature {name!r}; known: {', '.join(KNOWN_FEATURES)}")
    return np.hstack(blocks).astype(np.float64, copy=False)


@dataclass
class TinyRewardModel:
    """Scores replies to a prompt; untrained (all scores 0) until :func:`training.train`."""

    weights: np.ndarray | None = None
    features: tuple[str, ...] = DEFAULT_FEATURES
    embedder_id: str = ""
    version: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    embedder: Embedder | None = field(default=None, repr=False, compare=False)
    # pair_key() of every pair it was trained on (empty for models saved before it existed)
    train_keys: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)
    # P(a ≻ b) = sigmoid((s_a − s_b) / temperature), fitted on cross-validated margins
    temperature: float = 1.0

    @property
    def trained(self) -> bool:
        """Whether the model has weights."""
        return self.weights is not None

    def _embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = Embedder()
        return self.embedder

    def score_vectors(
        self, prompt_vec: np.ndarray, reply_vecs: np.ndarray, replies: Sequence[str],
        prompt: str = "",
    ) -> list[float]:
        """Scores from embeddings already computed (no I/O, no network)."""
        if self.weights is None or len(replies) == 0:
            return [0.0] * len(replies)
        prompts = np.broadcast_to(prompt_vec.reshape(1, -1), reply_vecs.shape)
        x = featurize(self.features, prompts, reply_vecs, replies, [prompt])
        return [float(v) for v in x @ self.weights]

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """One score per response (higher is better). All 0 when untrained."""
        if self.weights is None or not responses:
            return [0.0] * len(responses)
        vecs = self._embedder().embed([prompt, *responses])
        return self.score_vectors(vecs[0], vecs[1:], responses, prompt)

    def explain(self, prompt: str, responses: Sequence[str]) -> list[dict[str, float]]:
        """Per response: its score split into the style part and the content part.

        Style = the style block and the length block; content = everything else (the
        embeddings and the words). ``style + content == score``.
        """
        if self.weights is None or not responses:
            return [{"style": 0.0, "content": 0.0, "score": 0.0} for _ in responses]
        vecs = self._embedder().embed([prompt, *responses])
        prompts = np.broadcast_to(vecs[0].reshape(1, -1), vecs[1:].shape)
        x = featurize(self.features, prompts, vecs[1:], responses, [prompt])
        mask = np.zeros(x.shape[1], dtype=bool)
        for name, cols in feature_layout(self.features, vecs.shape[1]):
            if name in ("style", "length"):
                mask[cols] = True
        style = x[:, mask] @ self.weights[mask]
        content = x[:, ~mask] @ self.weights[~mask]
        return [{"style": float(s), "content": float(c), "score": float(s + c)}
                for s, c in zip(style, content, strict=True)]

    def style_weights(self) -> dict[str, float]:
        """The learned weight of each named style feature (logit per unit of the feature).

        Counts are log(1 + n), so a weight reads "per doubling" roughly; the length block's
        log word count is added to ``words``. Empty when the model has no style block.
        """
        if self.weights is None:
            return {}
        out: dict[str, float] = {}
        dim = (len(self.weights) - sum(block_width(n, 0) for n in self.features)) // max(
            1, sum(1 for n in self.features if n in ("reply", "prompt_x_reply")))
        for name, cols in feature_layout(self.features, dim):
            if name == "style":
                out.update({k: float(w) for k, w in zip(STYLE_NAMES, self.weights[cols],
                                                        strict=True)})
        for name, cols in feature_layout(self.features, dim):
            if name == "length" and out:
                out["words"] = out.get("words", 0.0) + float(self.weights[cols][0])
        return out

    def prob_preferred(self, prompt: str, a: str, b: str) -> float:
        """P(``a`` is preferred over ``b``): Bradley-Terry, calibrated by the temperature."""
        sa, sb = self.score(prompt, [a, b])
        return 1.0 / (1.0 + math.exp(-(sa - sb) / self.temperature))

    def turn_confidence(self, scores: Sequence[float]) -> dict[str, Any]:
        """How sure the ranking of one turn is: P(top reply ≻ the runner-up).

        ``unsure`` when that is below :data:`UNSURE_BELOW`; ``metric`` names this
        definition, so a later change of it can be told apart in stored figures.
        """
        if self.weights is None or len(scores) < 2:
            return {"metric": CONFIDENCE_METRIC, "p_top": None, "unsure": True}
        top, second = sorted(scores, reverse=True)[:2]
        p = 1.0 / (1.0 + math.exp(-(top - second) / self.temperature))
        return {"metric": CONFIDENCE_METRIC, "p_top": p, "unsure": p < UNSURE_BELOW}

    def rank(self, prompt: str, responses: Sequence[str]) -> list[tuple[int, float]]:
        """(index, score), best first; ties (and the untrained model) keep the given order."""
        scores = self.score(prompt, responses)
        return sorted(enumerate(scores), key=lambda item: -item[1])

    # ------------------------------------------------------------------ persistence

    def _payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "weights": None if self.weights is None else [float(v) for v in self.weights],
            "features": list(self.features),
            "embedder_id": self.embedder_id,
            "version": self.version,
            "metrics_json": json.dumps(self.metrics),
            "train_keys": sorted(self.train_keys),
            "temperature": self.temperature,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``reward_model.joblib`` and its signature into ``directory`` atomically."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        import joblib  # only when saving: ~70 ms of start-up the window does not need

        joblib.dump(self._payload(), buffer)
        data = buffer.getvalue()
        key = signing.load_key(create=True)
        assert key is not None
        path = folder / MODEL_FILENAME
        config.atomic_write_bytes(path, data)
        config.atomic_write_bytes(folder / SIGNATURE_FILENAME, signing.sign(data, key).encode())
        return path

    @classmethod
    def load(cls, directory: str | Path, embedder: Embedder | None = None) -> TinyRewardModel:
        """Load a model that a data folder saved; refuse unsigned or altered files.

        ``directory`` is a version folder (``<data folder>/models/v0002``), verified with the
        key of the data folder it lies in (else this process's data folder), or a data folder
        itself, which loads its newest version. Nothing is written, whatever happens.
        """
        folder = Path(directory).expanduser()
        path = folder / MODEL_FILENAME
        if not path.exists():
            newest = _newest_version_folder(folder)
            if newest is None:
                raise ModelFileError(
                    f"no reward model in {folder} ({MODEL_FILENAME} is missing): give a "
                    "version folder (<data folder>/models/vNNNN) or a data folder with "
                    "trained models"
                )
            folder, path = newest, newest / MODEL_FILENAME
        data = path.read_bytes()
        sig_path = folder / SIGNATURE_FILENAME
        keys = signing.candidate_keys(folder)
        if not keys:
            looked = [signing.key_path()]
            if folder.resolve().parent.name == signing.MODELS_FOLDER:
                looked.insert(0, signing.key_path(folder.resolve().parent.parent))
            raise ModelFileError(
                f"refusing {path}: no signing key to verify it with (looked for "
                f"{' and '.join(map(str, looked))}). A model loads from inside the data folder "
                "that trained it: load <data folder>/models/vNNNN, or point --data-dir / "
                "RLHF_DESKTOP_HOME at that data folder."
            )
        if not sig_path.exists():
            raise ModelFileError(
                f"refusing {path}: it is not signed by this installation (no "
                f"{SIGNATURE_FILENAME}). Model files are code; only files written here load."
            )
        signature = sig_path.read_text(errors="replace")
        if not any(signing.verify(data, signature, k.read_bytes()) for k in keys):
            raise ModelFileError(
                f"refusing {path}: its signature does not match the key of "
                f"{' or '.join(str(k.parent.parent) for k in keys)} (the file was altered, or "
                "written by another data folder). Load it from inside the data folder that "
                "trained it, or retrain there with `rlhf-desktop --data-dir DIR train`."
            )
        payload = _safe_unpickle(data, path)
        model = cls._from_payload(payload, path, embedder)
        if model.version is None:
            model.version = _version_of(folder)
        return model

    @classmethod
    def _from_payload(
        cls, payload: Any, path: Path, embedder: Embedder | None
    ) -> TinyRewardModel:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not an rlhf-desktop reward model")
        weights = payload.get("weights")
        return cls(
            weights=None if weights is None else np.asarray(weights, dtype=np.float64),
            features=tuple(payload.get("features") or LEGACY_FEATURES),
            embedder_id=str(payload.get("embedder_id", "")),
            version=payload.get("version"),
            metrics=json.loads(payload.get("metrics_json") or "{}"),
            embedder=embedder,
            train_keys=frozenset(str(k) for k in payload.get("train_keys") or ()),
            temperature=float(payload.get("temperature") or 1.0),
        )


_VERSION_FOLDER = re.compile(r"v(\d+)")


def _version_of(folder: Path) -> int | None:
    """The version number a version folder's name carries (``v0002`` → 2)."""
    match = _VERSION_FOLDER.fullmatch(folder.name)
    return int(match.group(1)) if match else None


def _newest_version_folder(folder: Path) -> Path | None:
    """``folder/models/vNNNN`` (or ``folder/vNNNN``) with the highest number and a model file."""
    for base in (folder / signing.MODELS_FOLDER, folder):
        if not base.is_dir():
            continue
        found = [(v, f) for f in base.iterdir()
                 if (v := _version_of(f)) is not None and (f / MODEL_FILENAME).is_file()]
        if found:
            return max(found)[1]
    return None


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers and strings only: no class, no callable, ever."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def _safe_unpickle(data: bytes, path: Path) -> Any:
    """A signed model file's payload, read without running code (a second line of defence)."""
    try:
        return _PlainDataUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path} is not an rlhf-desktop reward model ({exc})") from exc
