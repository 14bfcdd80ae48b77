"""Typed provider faults. Each message says what happened and what the user can do.

Every error keeps the candidates that were streamed before it happened in ``partial``
(finished ones as they finished, unfinished ones with their partial text), so nothing the
user has already seen is lost. Messages are built by this package, never copied from an
exception that might carry request headers, and any secret is redacted from text that the
server sent back.
"""

from __future__ import annotations

import re

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


class ChoicesRefusedError(InvalidRequestError):
    """The server refused a request for several choices (``n`` > 1) as invalid.

    llama.cpp's server answers ``n`` above its slot count with a 400 ("Field 'n': Value must be
    between 1 <= value <= 4"), and some models refuse ``n`` > 1 outright. The turn then asks
    for its replies one request each instead of failing.
    """


_N_REFUSED = re.compile(
    r"""(field|param(eter)?|argument|value\s+of|invalid|unsupported)\s*[:=]?\s*['"`]n['"`]"""
    r"""|['"`]n['"`]\s*(must|is\s+not\s+supported|should|is\s+invalid)"""
    r"""|\bonly\s+n\s*=\s*1\b""",
    re.IGNORECASE)


def refuses_choices(message: str, body: dict[str, object] | None = None) -> bool:
    """Whether a 400/422 says that the number of choices (``n``) is what was refused."""
    if body and body.get("param") == "n":
        return True
    return bool(_N_REFUSED.search(message))


PROXY_KEY = "key"
"""A LiteLLM proxy refused the app's own key."""
UPSTREAM_KEY = "upstream"
"""A LiteLLM proxy took the app's key, but the service behind it refused the proxy's key."""
_UPSTREAM_AUTH = re.compile(r"^litellm\.AuthenticationError:\s*(\w+?)Exception", re.IGNORECASE)
UPSTREAM_NAMES = {"azure": "Azure OpenAI", "openai": "OpenAI", "azure_ai": "Azure AI"}


def proxy_key_refusal(status: int | None, message: str,
                      body: dict[str, object] | None = None) -> tuple[str, str] | None:
    """Whether a LiteLLM proxy's error body says a key was refused, and whose:
    (:data:`PROXY_KEY`, "") when the proxy refused the app's key (a wrong key gives 400
    ``no_db_connection`` when the proxy has no key database, else 401 ``auth_error``), or
    (:data:`UPSTREAM_KEY`, upstream name) when the service behind the proxy refused the
    proxy's own key (401 ``litellm.AuthenticationError: AzureException ...``); else None."""
    kind = str((body or {}).get("type") or "")
    if kind == "no_db_connection" or (status == 401 and kind == "auth_error"):
        return PROXY_KEY, ""
    upstream = _UPSTREAM_AUTH.match(message.strip())
    if upstream is not None:
        name = upstream.group(1).lower()
        return UPSTREAM_KEY, UPSTREAM_NAMES.get(name, upstream.group(1))
    return None


def proxy_cooldown(body: dict[str, object] | None) -> bool:
    """Whether a 429 is a LiteLLM proxy pausing a model after the failures before it (not
    a rate limit of the service behind it)."""
    return str((body or {}).get("type") or "") == "all_deployments_in_cooldown"


class ContextLengthError(InvalidRequestError):
    """The messages (with room for the reply) do not fit the model's context window.

    ``tokens`` is the size of the messages and ``limit`` the model's context, in tokens,
    when the server (or the built-in model) said them.
    """

    def __init__(
        self,
        message: str,
        *,
        tokens: int | None = None,
        limit: int | None = None,
        provider: str = "",
        partial: list[Candidate] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, partial=partial, status_code=status_code)
        self.tokens = tokens
        self.limit = limit


_NUM = r"(\d[\d,]*)"
# (pattern, which group is the messages' tokens, which the context size) from the servers'
# own messages: OpenAI / Azure / vLLM / llama-cpp-python's server ("maximum context length"),
# llama-cpp-python itself and LiteLLM's passing it on ("Requested tokens (N) exceed context
# window of M"), llama.cpp's server ("request (N tokens) exceeds the available context size
# (M tokens)"), LM Studio ("loaded with context length of only M tokens").
_CONTEXT_PATTERNS: tuple[tuple[re.Pattern[str], int, int], ...] = (
    (re.compile(rf"requested tokens \({_NUM}\) exceeds? context window of {_NUM}", re.I), 1, 2),
    (re.compile(rf"request \({_NUM} tokens\) exceeds the available context size \({_NUM}"
                r" tokens\)", re.I), 1, 2),
    (re.compile(rf"trying to keep the first {_NUM} tokens.*?context length of only {_NUM}",
                re.I | re.S), 1, 2),
)
_LIMIT = re.compile(rf"maximum context length is {_NUM}", re.I)
_MESSAGES = re.compile(rf"\({_NUM} in the messages", re.I)
_REQUESTED = re.compile(
    rf"(?:requested|resulted in|request has|messages have|prompt has|prompt contains)\s+"
    rf"{_NUM}\s+(?:input\s+)?tokens", re.I)
_PHRASES = ("context_length_exceeded", "maximum context length", "exceed context window",
            "exceeds context window", "exceeds the available context size",
            "exceed_context_size_error", "contextwindowexceedederror", "context length of only",
            "context window exceeded", "prompt is too long", "input is too long")


def _int(text: str | None) -> int | None:
    return None if text is None else int(text.replace(",", ""))


def context_overflow(message: str, body: dict[str, object] | None = None
                     ) -> tuple[int | None, int | None] | None:
    """``(tokens, limit)`` when a server's error says the messages exceed the model's
    context (either may be None when unsaid), else None.

    ``body`` is the error object (``{"message", "code", "type", ...}``): its ``code``
    ``context_length_exceeded`` (OpenAI, Azure, llama-cpp-python's server), ``type``
    ``exceed_context_size_error`` with ``n_prompt_tokens`` / ``n_ctx`` (llama.cpp's server).
    """
    body = body or {}
    code = f"{body.get('code') or ''} {body.get('type') or ''}".lower()
    lowered = message.lower()
    n_ctx = body.get("n_ctx")
    n_prompt = body.get("n_prompt_tokens")
    if isinstance(n_ctx, int) and isinstance(n_prompt, int) and n_prompt > 0:
        return n_prompt, n_ctx
    for pattern, tokens_at, limit_at in _CONTEXT_PATTERNS:
        match = pattern.search(message)
        if match:
            return _int(match.group(tokens_at)), _int(match.group(limit_at))
    known = any(p in code for p in ("context_length_exceeded", "exceed_context_size"))
    if not known and not any(p in lowered for p in _PHRASES):
        if not ("n_ctx" in lowered and ("exceed" in lowered or "too long" in lowered)):
            return None
    limit = _LIMIT.search(message)
    tokens = _MESSAGES.search(message) or _REQUESTED.search(message)
    return (_int(tokens.group(1)) if tokens else None, _int(limit.group(1)) if limit else None)


def _about(tokens: int) -> str:
    return f"{round(tokens, -2):,}" if tokens >= 1000 else f"{tokens:,}"


def context_length_message(tokens: int | None, limit: int | None, *, what: str = "this model",
                           raise_setting: str = "") -> str:
    """The plain-words message: how big the conversation is, what the model takes, what to
    do (``raise_setting`` names a setting that makes the context bigger, e.g. the built-in
    model's context size)."""
    more = f", or raise {raise_setting}" if raise_setting else ""
    if tokens is not None and limit is not None and tokens < limit:
        return (f"Your message and the conversation are about {_about(tokens)} tokens; with "
                f"room for the reply that is more than the {limit:,} {what} takes. Shorten "
                f"the message, start a new chat, or lower the reply length (Settings → Max "
                f"tokens){more}.")
    size = (f"Your message and the conversation are about {_about(tokens)} tokens"
            if tokens is not None else "Your message and the conversation are too long")
    takes = (f"; {what} takes {limit:,}." if limit is not None
             else f" for the context of {what}.")
    return f"{size}{takes} Shorten the message or start a new chat{more}."


def context_length_error(message: str, body: dict[str, object] | None = None, *,
                         what: str = "this model", raise_setting: str = "",
                         provider: str = "", status_code: int | None = None
                         ) -> ContextLengthError | None:
    """A :class:`ContextLengthError` when ``message`` (and ``body``) say the context
    overflowed, else None."""
    found = context_overflow(message, body)
    if found is None:
        return None
    tokens, limit = found
    return ContextLengthError(
        context_length_message(tokens, limit, what=what, raise_setting=raise_setting),
        tokens=tokens, limit=limit, provider=provider, status_code=status_code)


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
    "ContextLengthError",
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
    "context_length_error",
    "context_length_message",
    "context_overflow",
]
