"""A refused key says so plainly, and where to set it: Azure itself, and a LiteLLM proxy
in front of Azure (its own key check, and Azure refusing the proxy's key behind it).

The Azure-protocol server answers over a real socket with the bodies Azure and LiteLLM send
(measured on litellm[proxy] 1.108.7: /work/shared/tools/azure-litellm.sh); the last test
asks a real LiteLLM proxy (skipped unless ``litellm`` is installed, see conftest).
"""

from __future__ import annotations

import pytest

from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.providers import AuthError, ProviderError, RateLimitError
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.azure_server import AzureServer
from tests.providers.conftest import LITELLM_KEY, azure_provider, fast_settings, run

HELLO = [Message("user", "Say hello.")]
WRONG = "sk-wrong-key-7c1e55aa90"


async def _first_error(provider: OpenAIChatProvider) -> ProviderError:
    try:
        async for _ in provider.stream(HELLO, SamplingParams(n=2, max_tokens=8)):
            pass
    except ProviderError as exc:
        return exc
    finally:
        await provider.aclose()
    raise AssertionError("the request did not fail")


def _error(server: AzureServer, key: str = WRONG) -> ProviderError:
    return run(_first_error(azure_provider(server, key=key,
                                           settings=fast_settings(max_retries=0))))


def test_azure_refusing_the_key_names_the_variable(azure_server: AzureServer) -> None:
    error = _error(azure_server)
    assert isinstance(error, AuthError) and error.status_code == 401
    assert "rejected the API key" in str(error)
    assert "AZURE_OPENAI_API_KEY" in str(error) and error.setting == "AZURE_OPENAI_API_KEY"
    assert WRONG not in str(error)


def test_litellm_without_a_key_database_refusing_the_key_says_the_key_was_refused(
        azure_server: AzureServer) -> None:
    azure_server.litellm_keys = True  # a wrong key: 400 "No connected db."
    error = _error(azure_server)
    message = str(error)
    assert isinstance(error, AuthError), message
    assert error.status_code == 400
    assert "refused the API key" in message and "LiteLLM proxy" in message
    assert "refused the request" not in message
    assert "Set the proxy's key in AZURE_OPENAI_API_KEY" in message
    assert error.setting == "AZURE_OPENAI_API_KEY"
    assert WRONG not in message


def test_litellm_with_the_right_key_still_answers(azure_server: AzureServer) -> None:
    azure_server.litellm_keys = True

    async def go() -> str:
        provider = azure_provider(azure_server)
        texts = [c.text for c in await provider.generate(HELLO, SamplingParams(n=1))]
        await provider.aclose()
        return texts[0]

    assert run(go()).startswith("Reply 0")


def test_azure_behind_litellm_refusing_the_proxys_key_points_at_the_proxy_config(
        azure_server: AzureServer) -> None:
    azure_server.inject("litellm_upstream_auth")
    error = _error(azure_server, key=azure_server.api_key)
    message = str(error)
    assert isinstance(error, AuthError) and error.status_code == 401
    assert "accepted this app's key" in message
    assert "Azure OpenAI behind it refused the proxy's own key" in message
    assert "in the proxy's configuration" in message
    assert "AZURE_OPENAI_API_KEY in this app is not the key that failed" in message
    assert error.setting == ""  # nothing in this app's settings to fix


def test_litellm_cooldown_after_failures_is_not_called_a_rate_limit(
        azure_server: AzureServer) -> None:
    azure_server.inject("litellm_cooldown", retry_after=5)
    error = _error(azure_server, key=azure_server.api_key)
    message = str(error)
    assert isinstance(error, RateLimitError) and error.retry_after == 5
    assert "rate limiting" not in message
    assert "paused deployment 'gpt-test' for 5 s" in message
    assert "The first error of this turn says why" in message


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.timeout(180)
def test_real_litellm_proxy_refusing_a_wrong_key(litellm_proxy: str) -> None:
    provider = OpenAIChatProvider.from_azure(
        endpoint=litellm_proxy, api_key=WRONG, deployment="gpt-test",
        api_version="2024-08-01-preview", settings=fast_settings(max_retries=0,
                                                                 request_timeout_s=60.0))
    error = run(_first_error(provider))
    message = str(error)
    assert isinstance(error, AuthError), message
    assert "refused the API key" in message and "AZURE_OPENAI_API_KEY" in message
    assert WRONG not in message and LITELLM_KEY not in message
