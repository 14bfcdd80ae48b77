"""The lean BERT runner (numpy, no torch) gives sentence-transformers' vectors, and is used only
where it can; the library is an optional fallback that says which extra brings it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlhf_desktop import config
from rlhf_desktop.reward import bert_encoder
from rlhf_desktop.reward.embedder import Embedder
from tests.helpers import hh_rows

EDGE_TEXTS = [
    "",
    "   ",
    "  leading and trailing spaces  ",
    "héllo wörld, 日本語のテキスト 🙂 — naïve café",
    "word " * 600,  # far past the 256-token limit: truncated the same way
    "x" * 5000,  # one very long token run
    "Line one\n\nLine two\twith a tab",
    "```python\nprint('code')\n```",
]


DATA_SETS = ("hh-harmless-dev.jsonl", "pandalm-human.jsonl", "llmbar-human.jsonl")
TRAINING_STACK = ("torch", "transformers", "sentence_transformers", "trl", "peft",
                  "accelerate", "datasets")
BLOCK_TRAINING_STACK = f"""
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {TRAINING_STACK!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""
"""Run first in a subprocess: the training stack behaves as if it were not installed."""


def real_texts(hh_data: Path, rows: int = 40) -> list[str]:
    """Prompts and both replies of real pairs, long and short."""
    texts: list[str] = []
    for row in hh_rows(hh_data, 0, rows):
        texts += [str(row["prompt"]), str(row["chosen"]), str(row["rejected"])]
    return texts


@pytest.fixture(scope="module")
def reference() -> object:
    """sentence-transformers on the built-in MiniLM folder: the vectors to match."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(config.default_embedder_dir()), device="cpu")


def test_builtin_minilm_runs_on_the_lean_runner_with_the_librarys_vectors(hh_data, reference):
    texts = real_texts(hh_data) + EDGE_TEXTS
    embedder = Embedder()
    lean = embedder.embed(texts)
    assert embedder.backend == "bert"
    assert embedder.max_seq_length == reference.max_seq_length == 256  # type: ignore[attr-defined]
    expected = reference.encode(texts, normalize_embeddings=True, batch_size=32)  # type: ignore[attr-defined]
    assert lean.shape == expected.shape == (len(texts), 384)
    assert np.abs(lean - expected).max() < 1e-5
    assert np.allclose(np.linalg.norm(lean, axis=1), 1.0, atol=1e-5)
    # Real texts differ from each other: the comparison above is not between constants.
    assert np.abs(lean[0] - lean[1]).max() > 0.01


def test_vectors_match_the_library_on_prompts_and_replies_of_every_data_set(hh_data, reference):
    texts: list[str] = []
    for name in DATA_SETS:
        for row in hh_rows(hh_data.parent / name, 0, 25):
            texts += [str(row["prompt"]), str(row["chosen"]), str(row["rejected"])]
    lean = bert_encoder.BertEncoder(config.default_embedder_dir(), normalize=True).encode(texts)
    expected = reference.encode(texts, normalize_embeddings=True)  # type: ignore[attr-defined]
    cosine = np.sum(lean * expected, axis=1) / (
        np.linalg.norm(lean, axis=1) * np.linalg.norm(expected, axis=1))
    assert len(texts) == 225
    assert cosine.min() >= 0.9999
    assert np.abs(lean - expected).max() < 1e-5


def test_batching_and_order_do_not_change_a_vector(hh_data):
    texts = real_texts(hh_data, 12)
    encoder = bert_encoder.BertEncoder(config.default_embedder_dir())
    together = encoder.encode(texts, batch_size=32)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    reversed_ = encoder.encode(texts[::-1], batch_size=5)[::-1]
    assert np.abs(together - alone).max() < 1e-5
    assert np.abs(together - reversed_).max() < 1e-5


def test_environment_forces_sentence_transformers(monkeypatch, hh_data):
    texts = real_texts(hh_data, 3)
    monkeypatch.setenv("RLHF_DESKTOP_EMBEDDER_BACKEND", "sentence-transformers")
    forced = Embedder()
    vectors = forced.embed(texts)
    assert forced.backend == "sentence-transformers"
    monkeypatch.delenv("RLHF_DESKTOP_EMBEDDER_BACKEND")
    lean = Embedder()
    assert np.abs(lean.embed(texts) - vectors).max() < 1e-5
    assert lean.backend == "bert"


def linked_copy(source: Path, target: Path) -> Path:
    """A copy of the model folder whose config files can be changed.

    Small files are copied; only the 90 MB weights are linked, and tests only delete that link
    (writing through it would change the installed package).
    """
    for item in source.rglob("*"):
        dest = target / item.relative_to(source)
        if item.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif item.suffix == ".safetensors":
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(item, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, dest)
    return target


def test_a_folder_the_runner_cannot_run_goes_through_sentence_transformers(tmp_path, reference):
    folder = linked_copy(config.default_embedder_dir(), tmp_path / "cls-minilm")
    pooling = folder / "1_Pooling" / "config.json"
    settings = json.loads(pooling.read_text())
    settings.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(settings))
    assert "mean pooling" in (bert_encoder.supports(folder) or "")

    embedder = Embedder(model_dir=folder)
    vectors = embedder.embed(["The capital of France is Paris.", "Bananas are yellow."])
    assert embedder.backend == "sentence-transformers"
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(folder), device="cpu").encode(
        ["The capital of France is Paris.", "Bananas are yellow."], normalize_embeddings=True)
    assert np.abs(vectors - expected).max() < 1e-5
    mean_pooled = reference.encode(["The capital of France is Paris."],  # type: ignore[attr-defined]
                                   normalize_embeddings=True)
    assert np.abs(vectors[0] - mean_pooled[0]).max() > 1e-3  # CLS pooling really was used


def test_a_folder_without_normalize_still_gives_unit_vectors(tmp_path, reference):
    folder = linked_copy(config.default_embedder_dir(), tmp_path / "no-normalize")
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules[:2]))
    assert bert_encoder.supports(folder) is None
    texts = ["The capital of France is Paris.", "Bananas are yellow."]
    raw = bert_encoder.BertEncoder(folder).encode(texts)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)  # the folder's own output
    embedder = Embedder(model_dir=folder)
    vectors = embedder.embed(texts)
    assert embedder.backend == "bert"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = reference.encode(texts, normalize_embeddings=True)  # type: ignore[attr-defined]
    assert np.abs(vectors - expected).max() < 1e-5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda f: _rewrite(f / "config.json", model_type="roberta"), "not a gelu BERT"),
        (lambda f: _rewrite(f / "sentence_bert_config.json", do_lower_case=True),
         "do_lower_case"),
        (lambda f: (f / "modules.json").write_text("[]"), "not Transformer + Pooling"),
        (lambda f: (f / "config.json").write_text("{broken"), "no readable"),
    ],
)
def test_supports_names_what_it_cannot_run(tmp_path, change, reason):
    folder = linked_copy(config.default_embedder_dir(), tmp_path / "model")
    assert bert_encoder.supports(folder) is None
    change(folder)
    assert reason in (bert_encoder.supports(folder) or "")


def _rewrite(path: Path, **values: object) -> None:
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data))


def test_embedding_never_imports_the_library_stack(data_home):
    code = (
        "import sys\n"
        "from rlhf_desktop.reward.embedder import Embedder\n"
        "e = Embedder(); v = e.embed(['hello there'])\n"
        "assert v.shape == (1, 384), v.shape\n"
        "print(sorted(m for m in ('sentence_transformers', 'transformers', 'sklearn', 'pandas')"
        " if m in sys.modules), e.backend)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "RLHF_DESKTOP_HOME": str(data_home)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] bert"


def run_without_training_stack(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter where torch and the rest cannot be imported."""
    return subprocess.run([sys.executable, "-c", BLOCK_TRAINING_STACK + code],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "RLHF_DESKTOP_HOME": str(home)})


def test_the_lean_runner_needs_no_torch(hh_data, reference, tmp_path, data_home):
    texts = real_texts(hh_data, 5)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    out = tmp_path / "vectors.npy"
    code = (
        "import json, sys, numpy as np\n"
        "from rlhf_desktop.reward.embedder import Embedder\n"
        f"texts = json.loads(open({str(tmp_path / 'texts.json')!r}).read())\n"
        "e = Embedder(); np.save(" + repr(str(out)) + ", e.embed(texts))\n"
        "try:\n    import torch\nexcept ImportError:\n    print('no torch')\n"
        "print(e.backend)\n"
    )
    proc = run_without_training_stack(code, data_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["no torch", "bert"]
    expected = reference.encode(texts, normalize_embeddings=True)  # type: ignore[attr-defined]
    assert np.abs(np.load(out) - expected).max() < 1e-5


def test_a_folder_only_the_library_runs_names_the_tune_extra_when_it_is_missing(
        tmp_path, data_home):
    folder = linked_copy(config.default_embedder_dir(), tmp_path / "cls-minilm")
    _rewrite(folder / "1_Pooling" / "config.json", pooling_mode_mean_tokens=False,
             pooling_mode_cls_token=True)
    code = (
        "from rlhf_desktop.reward.embedder import Embedder, EmbedderError\n"
        f"e = Embedder(model_dir={str(folder)!r})\n"
        "try:\n    e.embed(['hello'])\nexcept EmbedderError as exc:\n    print(exc)\n"
    )
    proc = run_without_training_stack(code, data_home)
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout
    assert "needs sentence-transformers" in message and "mean pooling" in message
    assert "pip install -e '.[tune]'" in message and "embedder_path" in message
