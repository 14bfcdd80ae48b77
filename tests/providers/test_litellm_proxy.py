"""The Azure route of the LiteLLM proxy in front of llama.cpp's own server.

LiteLLM passes ``n`` on. llama-cpp-python's server ignored it and cut a running reply when
another request arrived (a normal-looking ``stop`` reply, empty or cut): that stack is now
simulated in test_n_ignoring_servers.py. llama.cpp's own server honours ``n`` up to its slots
and reports one usage total for a multi-choice request. Skipped
unless a ``litellm`` executable is found (``RLHF_TEST_LITELLM``, e.g. the one that
/work/shared/tools/azure-litellm.sh installs in /tmp/azharness/.venv/bin/litellm).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.providers.conftest import LITELLM_KEY, fast_settings, run
from tests.providers.http_meter import HttpMeter

pytestmark = [pytest.mark.slow, pytest.mark.llama]


@pytest.mark.timeout(120)
def test_four_whole_replies_on_each_turn_through_litellm(litellm_proxy: str) -> None:
    url = urlsplit(litellm_proxy)
    with HttpMeter(url.hostname or "127.0.0.1", url.port or 80) as meter:
        provider = OpenAIChatProvider.from_azure(
            endpoint=f"http://127.0.0.1:{meter.port}", api_key=LITELLM_KEY,
            deployment="gpt-test", api_version="2024-08-01-preview",
            settings=fast_settings(request_timeout_s=60.0))

        async def go() -> list[list[Candidate]]:
            turns = []
            for seed in (3, 30, 300):
                params = SamplingParams(n=4, max_tokens=16, temperature=1.0, seed=seed)
                turns.append(await provider.generate(
                    [Message("user", "Explain gravity like I'm 5")], params))
            await provider.aclose()
            return turns

        turns = run(go())
    replies = [cand for cands in turns for cand in cands]
    assert [len(cands) for cands in turns] == [4, 4, 4]
    assert [c.index for c in replies if not c.text.strip()] == []  # none empty
    for cand in replies:
        assert cand.error is None and cand.finish_reason in ("stop", "length")
        assert cand.prompt_tokens
    # The server honoured n (LiteLLM drops some choices' finish reason: those replies were asked
    # again on their own, side by side in llama.cpp's slots, and came back whole).
    assert provider.n_supported is True
    assert meter.posts >= 3
