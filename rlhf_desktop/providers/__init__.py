"""LLM providers: Azure OpenAI, OpenAI, OpenAI-compatible servers and the built-in model.

Qt-free asyncio. Importing this package imports neither ``openai`` nor ``llama_cpp``;
each is imported when a provider of that kind is created or first used.

Typical use::

    provider, reason = choose_provider(settings)
    async for event in provider.stream(messages, SamplingParams(n=4), cancel):
        ...  # Delta(index, text) while streaming, Done(index, candidate) per candidate
        # (rarely Restart(index): drop that candidate's text so far)
    await provider.aclose()
"""

from __future__ import annotations

from rlhf_desktop.providers.base import (
    CANCELLED,
    ERROR,
    BaseProvider,
    Delta,
    Done,
    EventCallback,
    Provider,
    Restart,
    StreamEvent,
    build_messages,
)
from rlhf_desktop.providers.errors import (
    AuthError,
    ConnectionError_,
    ContentFilterError,
    InvalidRequestError,
    ModelLoadError,
    NotFoundError,
    ProviderConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
    TimeoutError_,
)
from rlhf_desktop.providers.select import ProviderChoice, build, choose_provider, resolve

__all__ = [
    "CANCELLED",
    "ERROR",
    "AuthError",
    "BaseProvider",
    "ConnectionError_",
    "ContentFilterError",
    "Delta",
    "Done",
    "EventCallback",
    "InvalidRequestError",
    "ModelLoadError",
    "NotFoundError",
    "Provider",
    "ProviderChoice",
    "ProviderConfigError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "Restart",
    "ServerError",
    "StreamEvent",
    "StreamInterrupted",
    "TimeoutError_",
    "build",
    "build_messages",
    "choose_provider",
    "resolve",
]
