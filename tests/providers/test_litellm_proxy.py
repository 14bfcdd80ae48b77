"""D1 as reported: the Azure route of the LiteLLM proxy in front of llama.cpp's server.

LiteLLM passes ``n`` on, llama.cpp's server ignores it, and a reply llama.cpp cuts short
when another request arrives comes back as a normal ``stop`` reply, empty or cut. Skipped
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
    assert meter.max_in_flight == 1  # so none was cut short by another request
    for cand in replies:
        assert cand.error is None and cand.finish_reason in ("stop", "length")
        assert cand.prompt_tokens and cand.completion_tokens  # D11
    assert provider.single_request_limit == 1
