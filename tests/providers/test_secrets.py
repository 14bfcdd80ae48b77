"""The API key never appears in logs, exception text, repr, tracebacks or candidates."""

from __future__ import annotations

import logging
import traceback

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams
from rlhf_desktop.providers import Done, ProviderError
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.azure_server import AzureServer
from tests.providers.conftest import AZURE_KEY, azure_provider, fast_settings, run

FAULTS = ["auth", "not_found", "rate_limit", "server_error", "drop", "drop_mid", "truncate",
          "sse_error", "content_filter", "choice_filter", "choice_error", None]


async def exercise(provider: OpenAIChatProvider) -> tuple[list[Candidate], str]:
    """Run one turn; return every candidate seen and all text an error could expose."""
    cands: list[Candidate] = []
    exposed = repr(provider) + provider.describe()
    try:
        async for event in provider.stream([Message("user", f"key {AZURE_KEY[:3]}")],
                                           SamplingParams(n=2, max_tokens=20)):
            if isinstance(event, Done):
                cands.append(event.candidate)
    except ProviderError as exc:
        cands.extend(exc.partial)
        exposed += str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
        exposed += repr(exc.__dict__)
    finally:
        await provider.aclose()
    return cands, exposed


@pytest.mark.parametrize("fault", FAULTS)
def test_key_never_leaks(azure_server: AzureServer, caplog: pytest.LogCaptureFixture,
                         fault: str | None) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "rlhf_desktop"):
        caplog.set_level(logging.DEBUG, logger=name)
    if fault is not None:
        azure_server.inject(fault, times=10, retry_after=0.01)
    cands, exposed = run(exercise(azure_provider(azure_server)))
    assert cands
    everything = exposed + caplog.text + repr(cands)
    assert AZURE_KEY not in everything
    assert azure_server.requests[0].headers["api-key"] == AZURE_KEY  # it was sent


def test_key_echoed_by_the_server_is_redacted(azure_server: AzureServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """OpenAI echoes a wrong key in its 401 message; our error text must not."""
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-but-still-secret-42"
    provider = OpenAIChatProvider.from_openai(api_key=wrong, model="gpt-test-model",
                                              base_url=azure_server.base_url,
                                              settings=fast_settings())
    cands, exposed = run(exercise(provider))
    assert "OPENAI_API_KEY" in exposed
    assert wrong not in exposed + caplog.text + repr(cands)
