"""The token count under the message box: what counts, when it shows, what it says."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rlhf_desktop.domain import Message
from rlhf_desktop.services.chat.token_count import TokenCount, TokenCounter, estimate, known_context

# tiktoken's wheel ships no encodings; LiteLLM's wheel carries cl100k_base in tiktoken's
# cache format (the harness of /work/shared/tools/azure-litellm.sh installs it here).
LITELLM_TOKENIZERS = Path("/tmp/azharness/.venv/lib/python3.11/site-packages/litellm/"
                          "litellm_core_utils/tokenizers")


def test_estimates_say_about_and_show_once_they_matter() -> None:
    counter = TokenCounter()
    text = "x" * 30_000
    count = counter.count([Message("user", text)], "", kind="compatible", model="llama3",
                          limit=None)
    assert not count.exact and count.tokens == estimate(text) + 4
    assert count.text() == f"about {count.tokens:,} tokens" and count.matters
    assert "estimate" in count.how
    small = counter.count([Message("user", "hello")], "", kind="compatible", model="m",
                          limit=None)
    assert not small.matters  # a short message shows nothing
    half = TokenCount(1100, 2048, False, "")
    assert half.matters and not half.over and half.text() == "about 1,100 of 2,048 tokens"
    assert TokenCount(9300, 2048, True, "").over
    assert not TokenCount(900, 2048, True, "").matters


def test_the_models_own_tokenizer_counts_exactly() -> None:
    counter = TokenCounter()
    count = counter.count([Message("user", "one two three"), Message("assistant", "four")],
                          "be brief", kind="local", model="SmolLM2", limit=2048,
                          tokenizer=lambda text: len(text.split()))
    assert count.exact and count.tokens == (2 + 3 + 1) + 3 * 4
    assert count.how == "the built-in model's tokenizer"
    assert count.text() == "18 of 2,048 tokens"


def test_openai_context_sizes_by_name() -> None:
    assert known_context("gpt-4o-mini-2024-07-18") == 128_000
    assert known_context("gpt-4-0613") == 8_192
    assert known_context("my-azure-deployment") is None


@pytest.mark.skipif(not LITELLM_TOKENIZERS.is_dir(), reason="no cached tiktoken encoding here")
def test_tiktoken_counts_exactly_once_its_encoding_is_on_the_machine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tiktoken")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(LITELLM_TOKENIZERS))
    counter = TokenCounter()
    text = "The quick brown fox jumps over the lazy dog."
    first = counter.count([Message("user", text)], "", kind="openai", model="gpt-4", limit=8192)
    assert not first.exact  # loading in the background: an estimate meanwhile
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        count = counter.count([Message("user", text)], "", kind="openai", model="gpt-4",
                              limit=8192)
        if count.exact:
            break
        time.sleep(0.05)
    assert count.exact and count.how == "tiktoken (cl100k_base)"
    assert count.tokens == 10 + 4  # cl100k_base: 10 tokens for this sentence


def test_without_the_encoding_it_says_it_is_an_estimate(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    pytest.importorskip("tiktoken")
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))  # empty: a download would be due
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # and it cannot happen
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    counter = TokenCounter()
    counter.count([Message("user", "hi")], "", kind="azure", model="gpt-4o", limit=None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = counter.count([Message("user", "hi")], "", kind="azure", model="gpt-4o",
                              limit=None)
        if "not on this machine" in count.how:
            break
        time.sleep(0.05)
    assert not count.exact and "o200k_base encoding is not on this machine" in count.how
    assert os.listdir(cache) == []
