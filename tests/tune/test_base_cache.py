"""The cached artefacts a run needs: the dequantised base model and llama.cpp's converter.

These run first (file order) and fill the test cache, so that on a fresh machine the
end-to-end tests in test_tune_e2e.py stay within their own timeouts.
"""

import os

import pytest

from rlhf_desktop import config
from rlhf_desktop.tune.base_model import cache_dir, resolve
from rlhf_desktop.tune.convert import RUNTIME, SCRIPT, converter_dir, llama_cpp_version
from rlhf_desktop.tune.options import TuneConfigError
from tests.tune.conftest import needs_tune_stack

pytestmark = [pytest.mark.slow, pytest.mark.llama, pytest.mark.timeout(120)]


def test_built_in_gguf_is_dequantised_once_with_its_chat_template():
    needs_tune_stack()
    from transformers import AutoTokenizer

    base = resolve("", cache_dir())
    assert base.gguf == config.default_gguf_path()
    folder = base.load_from
    stamp = (cache_dir() / "base-models").stat().st_mtime_ns
    config_file = f"{folder}/config.json"


    made = os.stat(config_file).st_mtime_ns
    again = resolve(str(base.gguf), cache_dir())
    assert again.load_from == folder and os.stat(config_file).st_mtime_ns == made
    assert (cache_dir() / "base-models").stat().st_mtime_ns == stamp  # nothing new written
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


def test_a_model_that_is_not_there_is_named(tmp_path):
    with pytest.raises(TuneConfigError, match="does not exist"):
        resolve(str(tmp_path / "missing.gguf"), cache_dir())
    (tmp_path / "folder").mkdir()
    with pytest.raises(TuneConfigError, match=r"no config\.json"):
        resolve(str(tmp_path / "folder"), cache_dir())


def test_converter_is_fetched_once_from_the_installed_runtimes_source(monkeypatch):
    needs_tune_stack()
    monkeypatch.delenv("RLHF_DESKTOP_LLAMA_CPP_DIR", raising=False)
    folder = converter_dir(cache_dir())
    assert folder.name == f"{RUNTIME}-{llama_cpp_version()}"
    assert (folder / SCRIPT).is_file() and (folder / "conversion" / "__init__.py").is_file()
    assert (folder / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert not (folder / "src").exists()  # only the converter, not llama.cpp's sources
    assert converter_dir(cache_dir()) == folder


def test_pairs_that_do_not_fit_are_listed_by_line_and_prompt(tmp_path):
    needs_tune_stack()
    from transformers import AutoTokenizer

    from rlhf_desktop.tune.data import read_pairs, select
    from tests.helpers import write_jsonl

    rows = [{"prompt": "Short question?", "chosen": "Yes.", "rejected": "No."},
            {"prompt": "Tell me about   cats " + "and dogs " * 80, "chosen": "a", "rejected": "b"},
            {"prompt": "Hi", "chosen": "long answer " * 80, "rejected": "ok"}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    records = read_pairs(path, system_prompt="Be brief.")
    assert records[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    tokenizer = AutoTokenizer.from_pretrained(resolve("", cache_dir()).load_from)
    kept, report = select(records, tokenizer, 96, str(path))
    assert [r["line"] for r in kept] == [1, 3]
    assert [(p.line, p.preview[:20]) for p in report.dropped_prompt_too_long] == [
        (2, "Tell me about cats a")]
    assert [p.line for p in report.truncated] == [3]
    assert "2 of 3 pairs used" in report.summary() and "lines 2" in report.summary()
