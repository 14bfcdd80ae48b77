"""Typed provider faults. Each message says what happened and what the user can do.

Every error keeps the candidates that were streamed before it happened in ``partial``
(finished ones as they finished, unfinished ones with their partial text), so nothing the
user has already seen is lost. Messages are built by this package, never copied from an
exception that might carry request headers, and any secret is redacted from text that the
server sent back.
"""

from __future__ import annotations

from rlhf_desktop.config import ConfigError
from rlhf_desktop.domain import Candidate


class ProviderError(Exception):
    """A provider fault with a message a user can act on.

    ``partial`` holds every candidate of the turn as far as it got (text streamed so far,
    ``finish_reason`` ``"error"`` for those cut short). ``status_code`` is the HTTP status
    when there was one. ``retryable`` says whether sending the same turn again may work.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        partial: list[Candidate] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.partial: list[Candidate] = list(partial or [])
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ProviderConfigError(ProviderError, ConfigError):
    """A missing or invalid provider setting; the message names the variable or setting."""


class ModelLoadError(ProviderError):
    """The built-in model (a GGUF file) could not be loaded."""


class AuthError(ProviderError):
    """401/403: the key was rejected. ``setting`` names the variable to fix."""

    def __init__(
        self,
        message: str,
        *,
        setting: str = "",
        provider: str = "",
        partial: list[Candidate] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, partial=partial, status_code=status_code)
        self.setting = setting


class NotFoundError(ProviderError):
    """404: unknown deployment, model or endpoint path. ``target`` names it."""

    def __init__(
        self,
        message: str,
        *,
        target: str = "",
        provider: str = "",
        partial: list[Candidate] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, partial=partial, status_code=status_code)
        self.target = target


class InvalidRequestError(ProviderError):
    """Another 400/422: the server refused the request (API version, parameters, length)."""


class ContentFilterError(ProviderError):
    """A request-level content filter refusal (Azure: 400 with code ``content_filter``)."""


class RateLimitError(ProviderError):
    """429 after the bounded retries. ``retry_after`` is the wait the server asked for (s)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str = "",
        partial: list[Candidate] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, partial=partial, status_code=status_code)
        self.retry_after = retry_after


class ServerError(ProviderError):
    """5xx after the bounded retries."""

    retryable = True


class ProviderConnectionError(ProviderError):
    """The server could not be reached (refused, DNS, reset) after the bounded retries."""

    retryable = True


class ProviderTimeoutError(ProviderError):
    """The connect or read limit passed (``connect_timeout_s`` / ``request_timeout_s``)."""

    retryable = True


class StreamInterrupted(ProviderError):
    """The stream ended in the middle of a reply; ``partial`` holds what arrived."""

    retryable = True


# Short aliases used in the issue text.
ConnectionError_ = ProviderConnectionError
TimeoutError_ = ProviderTimeoutError

__all__ = [
    "AuthError",
    "ConnectionError_",
    "ContentFilterError",
    "InvalidRequestError",
    "ModelLoadError",
    "NotFoundError",
    "ProviderConfigError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ServerError",
    "StreamInterrupted",
    "TimeoutError_",
]
