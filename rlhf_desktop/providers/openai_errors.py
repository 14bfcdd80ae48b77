"""Turning ``openai`` exceptions into typed, user-actionable provider errors.

Messages are written here from the status code, the error ``code`` and the endpoint's
description; the server's own message is appended only after the API key is redacted.
The ``openai`` package is imported inside functions so that importing the providers
package stays fast.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

from rlhf_desktop.providers.errors import (
    PROXY_KEY,
    AuthError,
    ChoicesRefusedError,
    ContentFilterError,
    ContextLengthError,
    InvalidRequestError,
    NotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
    context_length_error,
    proxy_cooldown,
    proxy_key_refusal,
    refuses_choices,
)


@dataclass(frozen=True)
class Target:
    """Where requests go, described for error messages (never holds the key)."""

    kind: str
    """``azure``, ``openai`` or ``compatible``."""
    label: str
    """``Azure OpenAI``, ``OpenAI`` or ``the OpenAI-compatible server``."""
    url: str
    model: str
    key_setting: str
    model_setting: str
    url_setting: str
    version_setting: str = ""

    @property
    def what(self) -> str:
        """``deployment 'x'`` on Azure, else ``model 'x'``."""
        noun = "deployment" if self.kind == "azure" else "model"
        return f"{noun} '{self.model}'"


def redact_secret(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (when at least 4 characters) replaced by ``***``."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def _error_body(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, str) and inner.strip():  # LM Studio: {"error": "text"}
            return {"message": inner}
        return inner if isinstance(inner, dict) else body
    if isinstance(body, str) and body.strip():
        return {"message": body}
    return {}


def _server_message(exc: Any, secret: str | None, limit: int = 300) -> str:
    body = _error_body(exc)
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        return ""
    message = redact_secret(message.strip(), secret)
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return message


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def content_filter_categories(data: Any) -> list[str]:
    """Names of the filtered categories in an Azure ``content_filter_result(s)`` mapping."""
    if not isinstance(data, dict):
        return []
    return sorted(
        name
        for name, value in data.items()
        if isinstance(value, dict) and value.get("filtered") is True
    )


def _with_detail(message: str, detail: str) -> str:
    return f"{message} (server said: {detail})" if detail else message


def _context_error(exc: BaseException, target: Target, status: int | None
                   ) -> ContextLengthError | None:
    """The plain-words error when the server says the messages exceed the context."""
    body = _error_body(exc)
    message = body.get("message")
    text = message if isinstance(message, str) else str(getattr(exc, "message", "") or "")
    return context_length_error(text, body, what="this model",
                                provider=target.kind, status_code=status)


def classify(
    exc: BaseException, target: Target, secret: str | None, *, streamed: bool
) -> ProviderError:
    """Map an exception raised by the ``openai`` client (after its retries) to a typed error.

    ``streamed`` is True when text had already arrived for this request: the failure is
    then a :class:`StreamInterrupted`.
    """
    import openai

    label, status = target.label, getattr(exc, "status_code", None)
    if streamed and not isinstance(exc, openai.APIStatusError):
        detail = _server_message(exc, secret) if isinstance(exc, openai.APIError) else ""
        return StreamInterrupted(
            _with_detail(f"The connection to {label} broke in the middle of a reply; the "
                         "text so far is kept. Send the message again to retry.", detail),
            provider=target.kind,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeoutError(
            f"{label} did not answer in time ({target.url}). Try again, or raise "
            "request_timeout_s / connect_timeout_s in Settings.",
            provider=target.kind,
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderConnectionError(
            f"Could not connect to {label} at {target.url}. Check your network connection "
            f"and {target.url_setting}.",
            provider=target.kind,
        )
    if not isinstance(exc, openai.APIStatusError) or status is None:
        overflow = _context_error(exc, target, None)
        if overflow is not None:  # an SSE error event that says so
            return overflow
        if isinstance(exc, openai.APIError):
            # An error event inside an SSE stream before any text.
            return ServerError(
                _with_detail(f"{label} reported an error while streaming.",
                             _server_message(exc, secret)),
                provider=target.kind,
            )
        return ProviderError(
            f"Unexpected error talking to {label}: {type(exc).__name__}.",
            provider=target.kind,
        )
    detail = _server_message(exc, secret)
    body = _error_body(exc)
    code = str(body.get("code") or "")
    refusal = proxy_key_refusal(status, detail, body)
    if refusal is not None:
        return _proxy_auth_error(refusal, target, status, detail)
    if status in (401, 403):
        what = "rejected the API key" if status == 401 else "refused access with this key"
        return AuthError(
            f"{label} {what} ({status}). Check {target.key_setting} in your environment or "
            f".env file (or the key stored in Settings)"
            + (f", and that it belongs to {target.url}." if target.kind == "azure" else "."),
            setting=target.key_setting, provider=target.kind, status_code=status,
        )
    if status == 404:
        if target.kind == "azure" and code == "DeploymentNotFound":
            message = (f"Azure OpenAI has no {target.what} at {target.url} (404). Check "
                       f"{target.model_setting}; a deployment created in the last few minutes "
                       "may not be ready yet.")
        elif target.kind == "azure":
            message = (f"Azure OpenAI answered 404 for {target.what} at {target.url}. Check "
                       f"{target.url_setting}, {target.model_setting} and "
                       f"{target.version_setting}.")
        else:
            message = (f"{label} has no {target.what} (404). Check {target.model_setting}"
                       + (f" and {target.url_setting}." if target.kind == "compatible" else "."))
        return NotFoundError(
            _with_detail(message, detail), target=target.model, provider=target.kind,
            status_code=status,
        )
    if status == 429 and code == "insufficient_quota":
        return RateLimitError(
            f"{label} says the account has no quota left (insufficient_quota). Check the "
            "plan and billing of the account that owns the key, or use another provider.",
            provider=target.kind, status_code=status,
        )
    if status == 429 and proxy_cooldown(body):
        wait = parse_retry_after(exc.response.headers)
        return RateLimitError(
            f"The LiteLLM proxy at {target.url} paused {target.what}"
            + (f" for {wait:.0f} s" if wait is not None else "")
            + " because the requests before this one failed (429, all deployments in "
            "cooldown). The first error of this turn says why: fix that, then try again.",
            retry_after=wait, provider=target.kind, status_code=status,
        )
    if status == 429:
        wait = parse_retry_after(exc.response.headers)
        when = "Wait a moment and try again"
        if wait is not None:
            when = f"Wait {wait:.0f} s and try again"
        return RateLimitError(
            f"{label} is rate limiting {target.what} (429). {when}, or ask for fewer "
            "candidates per turn.",
            retry_after=wait, provider=target.kind, status_code=status,
        )
    overflow = _context_error(exc, target, status)
    if overflow is not None:
        return overflow
    if status >= 500:
        return ServerError(
            _with_detail(f"{label} had a server error ({status}). Try again in a moment.",
                         detail),
            provider=target.kind, status_code=status,
        )
    if code == "content_filter":
        inner = body.get("innererror") if isinstance(body.get("innererror"), dict) else {}
        cats = content_filter_categories((inner or {}).get("content_filter_result"))
        why = f" (flagged: {', '.join(cats)})" if cats else ""
        return ContentFilterError(
            f"{label}'s content filter blocked this prompt{why}. Rephrase the message and "
            "send it again.",
            provider=target.kind, status_code=status,
        )
    if status in (400, 422) and refuses_choices(detail, body):
        return ChoicesRefusedError(
            _with_detail(f"{label} refused several replies in one request ({status}).", detail),
            provider=target.kind, status_code=status,
        )
    hint = ""
    if target.version_setting and "api version" in detail.lower():
        hint = f" Check {target.version_setting}."
    return InvalidRequestError(
        _with_detail(f"{label} refused the request ({status}).{hint}", detail),
        provider=target.kind, status_code=status,
    )


def _proxy_auth_error(refusal: tuple[str, str], target: Target, status: int,
                      detail: str) -> AuthError:
    """A key refused through a LiteLLM proxy, said plainly: whose key, and where to set it."""
    whose, upstream = refusal
    if whose == PROXY_KEY:
        message = (f"The LiteLLM proxy at {target.url} refused the API key ({status}): it "
                   "accepts only its master key or the keys it issued. Set the proxy's key "
                   f"in {target.key_setting} in your environment or .env file (or the key "
                   "stored in Settings).")
        setting = target.key_setting
    else:
        message = (f"The LiteLLM proxy at {target.url} accepted this app's key, but "
                   f"{upstream} behind it refused the proxy's own key ({status}). Fix the "
                   f"api_key of {target.what} in the proxy's configuration (its model_list); "
                   f"{target.key_setting} in this app is not the key that failed.")
        setting = ""
    return AuthError(_with_detail(message, detail), setting=setting, provider=target.kind,
                     status_code=status)
