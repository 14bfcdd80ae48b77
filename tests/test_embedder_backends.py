"""The lean BERT runner gives sentence-transformers' vectors, and is used only where it can."""

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
