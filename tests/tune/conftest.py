"""Fixtures for the tuning tests.

The dequantised base model (about a minute to make) and llama.cpp's converter (a 77 MB
download) are derived, read-only artefacts keyed by content and version, so the tests keep
them in one cache folder shared by test sessions (never the user's own cache).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.conftest import HH_DATA

TEST_CACHE = Path(tempfile.gettempdir()) / f"rlhf-desktop-test-cache-{os.getuid()}"


@pytest.fixture(autouse=True)
def tune_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    """$RLHF_DESKTOP_CACHE for every tuning test."""
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("RLHF_DESKTOP_CACHE", str(TEST_CACHE))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return TEST_CACHE


def needs_tune_stack() -> None:
    """Skip unless the ``tune`` extra and the built-in model are installed."""
    for name in ("trl", "peft", "transformers", "accelerate", "xllamacpp"):
        pytest.importorskip(name)
    from rlhf_desktop import config

    try:
        config.default_gguf_path()
    except config.ConfigError as exc:
        pytest.skip(str(exc))


def short_hh_rows(count: int) -> list[dict[str, str]]:
    """The first ``count`` HH pairs whose single-turn prompt is short (fast to train on)."""
    if not HH_DATA.exists():
        pytest.skip(f"{HH_DATA} is not present")
    rows = []
    with HH_DATA.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            prompt = row.get("prompt", "")
            if prompt.count("Human:") == 1 and len(prompt) < 200:
                rows.append(row)
            if len(rows) == count:
                break
    return rows
