"""Which provider to use, and why.

Order: an explicit choice (``RLHF_DESKTOP_PROVIDER`` in the environment or ``.env``, else
the ``provider`` setting when it is not ``auto``); else Azure OpenAI when
``AZURE_OPENAI_ENDPOINT``, ``AZURE_OPENAI_API_KEY`` and ``AZURE_OPENAI_DEPLOYMENT_NAME`` are
all present; else OpenAI when ``OPENAI_API_KEY`` is (an OpenAI-compatible server when
``OPENAI_BASE_URL`` or the ``openai_base_url`` setting is also set); else an
OpenAI-compatible server when only a base URL is set (local servers need no key); else
the built-in model. Variables come from the environment, then ``.env`` (the API keys also
from the keyring or the secrets file, see :mod:`rlhf_desktop.config`); a variable wins over
the matching setting. The choice and its reason are logged; the key never is.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.core.chat_models import local_model_name, tuned_version
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.providers.base import Provider
from rlhf_desktop.providers.errors import ProviderConfigError

log = logging.getLogger(__name__)

PROVIDER_ENV = "RLHF_DESKTOP_PROVIDER"
AZURE_ENDPOINT = "AZURE_OPENAI_ENDPOINT"
AZURE_KEY = "AZURE_OPENAI_API_KEY"
AZURE_DEPLOYMENT = "AZURE_OPENAI_DEPLOYMENT_NAME"
AZURE_VERSION = "AZURE_OPENAI_API_VERSION"
OPENAI_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
OPENAI_MODEL = "OPENAI_MODEL"
KINDS = ("azure", "openai", "compatible", "local")


@dataclass(frozen=True)
class ProviderChoice:
    """The resolved provider configuration, without the key (safe to log and show).

    ``endpoint`` is the Azure endpoint or base URL, or the GGUF file for ``local``;
    ``model`` is the deployment, the model name or the GGUF file stem.
    """

    kind: str
    reason: str
    endpoint: str = ""
    model: str = ""
    api_version: str = ""
    key_name: str = ""
    has_key: bool = False
    adapter: str = ""
    """For ``local``: the LoRA adapter (GGUF) of a tuned chat-model version, or ""."""


@dataclass(frozen=True)
class _Found:
    endpoint: str
    deployment: str
    api_version: str
    azure_key: bool
    openai_key: bool
    base_url: str
    openai_model: str


def _find(settings: Settings, env: Mapping[str, str]) -> _Found:
    def var(name: str, fallback: str) -> str:
        return (config.lookup(name, env) or fallback).strip()

    return _Found(
        endpoint=var(AZURE_ENDPOINT, settings.azure_endpoint),
        deployment=var(AZURE_DEPLOYMENT, settings.azure_deployment),
        api_version=var(AZURE_VERSION, settings.azure_api_version),
        azure_key=bool(config.get_secret(AZURE_KEY)),
        openai_key=bool(config.get_secret(OPENAI_KEY)),
        base_url=var(OPENAI_BASE_URL, settings.openai_base_url),
        openai_model=var(OPENAI_MODEL, settings.openai_model),
    )


def _azure_missing(found: _Found) -> list[str]:
    missing = []
    if not found.endpoint:
        missing.append(f"{AZURE_ENDPOINT} (or the azure_endpoint setting)")
    if not found.azure_key:
        missing.append(AZURE_KEY)
    if not found.deployment:
        missing.append(f"{AZURE_DEPLOYMENT} (or the azure_deployment setting)")
    return missing


def explicit_kind(settings: Settings, env: Mapping[str, str] | None = None) -> str | None:
    """The provider asked for explicitly, or None for automatic choice."""
    raw = config.lookup(PROVIDER_ENV, env) or ""
    source = PROVIDER_ENV
    if not raw.strip() or raw.strip().lower() == "auto":
        raw, source = settings.provider, "the provider setting"
    kind = raw.strip().lower()
    if kind in ("", "auto"):
        return None
    if kind not in KINDS:
        raise ProviderConfigError(
            f"{source} is {raw!r}; use one of auto, {', '.join(KINDS)}."
        )
    return kind


def resolve(settings: Settings | None = None) -> ProviderChoice:
    """Decide which provider to use and why, without creating any client."""
    settings = settings or config.load_settings()
    env = config.env_file_values()
    found = _find(settings, env)
    kind = explicit_kind(settings, env)
    if kind is not None:
        return _explicit(kind, found, settings)
    missing = _azure_missing(found)
    if not missing:
        return _azure_choice(found, f"{AZURE_ENDPOINT}, {AZURE_KEY} and {AZURE_DEPLOYMENT} "
                                    "are set")
    note = ""
    if len(missing) < 3:
        note = f" (Azure OpenAI is not used: {', '.join(missing)} missing)"
    if found.openai_key and found.base_url:
        return _openai_choice(found, "compatible",
                              f"{OPENAI_KEY} and {OPENAI_BASE_URL} are set{note}")
    if found.openai_key:
        return _openai_choice(found, "openai", f"{OPENAI_KEY} is set{note}")
    if found.base_url:
        return _openai_choice(found, "compatible",
                              f"{OPENAI_BASE_URL} is set (no key needed){note}")
    return _local_choice(settings, f"no Azure OpenAI or OpenAI credentials found{note}")


def _explicit(kind: str, found: _Found, settings: Settings) -> ProviderChoice:
    why = f"chosen explicitly ({kind})"
    if kind == "azure":
        missing = _azure_missing(found)
        if missing:
            raise ProviderConfigError(
                f"The provider is set to azure, but {', '.join(missing)} is not set. Add it "
                "to your environment or .env file (see .env.example)."
            )
        return _azure_choice(found, why)
    if kind == "openai":
        if not found.openai_key:
            raise ProviderConfigError(
                f"The provider is set to openai, but {OPENAI_KEY} is not set. Add it to your "
                "environment or .env file, or store it in Settings."
            )
        return _openai_choice(found, "openai", why, base_url="")
    if kind == "compatible":
        if not found.base_url:
            raise ProviderConfigError(
                f"The provider is set to compatible, but {OPENAI_BASE_URL} (or the "
                "openai_base_url setting) is not set, e.g. http://localhost:11434/v1."
            )
        return _openai_choice(found, "compatible", why)
    return _local_choice(settings, why)


def _azure_choice(found: _Found, reason: str) -> ProviderChoice:
    if not found.api_version:
        raise ProviderConfigError(f"{AZURE_VERSION} is empty; set it, e.g. 2024-10-21.")
    return ProviderChoice(kind="azure", reason=reason, endpoint=found.endpoint,
                          model=found.deployment, api_version=found.api_version,
                          key_name=AZURE_KEY, has_key=True)


def _openai_choice(found: _Found, kind: str, reason: str,
                   base_url: str | None = None) -> ProviderChoice:
    url = found.base_url if base_url is None else base_url
    if not found.openai_model:
        raise ProviderConfigError(f"{OPENAI_MODEL} (or the openai_model setting) is empty.")
    return ProviderChoice(kind=kind, reason=reason, endpoint=url, model=found.openai_model,
                          key_name=OPENAI_KEY, has_key=found.openai_key)


def _local_choice(settings: Settings, reason: str) -> ProviderChoice:
    if settings.gguf_path:
        path = Path(settings.gguf_path).expanduser()
        if not path.is_file():
            raise ProviderConfigError(
                f"The gguf_path setting points to {path}, which is not a file. Fix the "
                "setting or clear it to use the built-in model."
            )
    else:
        try:
            path = config.default_gguf_path()
        except config.ConfigError as exc:
            raise ProviderConfigError(str(exc)) from None
    if importlib.util.find_spec("xllamacpp") is None:
        raise ProviderConfigError(
            "The built-in model needs xllamacpp, which is not installed. Run "
            "`make setup`, or configure Azure OpenAI or OpenAI in .env (see .env.example)."
        )
    if settings.chat_model_version:
        from rlhf_desktop.providers.chat_versions import adapter_for

        adapter = adapter_for(settings.chat_model_version, path)
        return ProviderChoice(kind="local", reason=reason, endpoint=str(path),
                              model=local_model_name(path.stem, settings.chat_model_version),
                              adapter=str(adapter))
    return ProviderChoice(kind="local", reason=reason, endpoint=str(path), model=path.stem)


def source_choice(source: CandidateSource, settings: Settings) -> ProviderChoice:
    """The provider configuration of one arena candidate source.

    ``auto`` is what the chat itself would resolve (environment, ``.env``, settings); an
    explicit kind skips ``RLHF_DESKTOP_PROVIDER``. The source's ``model`` replaces the
    deployment or model name (for ``local``: a GGUF file instead of the built-in one), its
    ``base_url`` the server of a ``compatible`` source, and its ``chat_model_version`` picks
    the tuned adapter of a ``local`` one. Raises :class:`ProviderConfigError` naming what is
    missing.
    """
    model = source.model.strip()
    url = source.base_url.strip()
    local_settings = replace(settings, chat_model_version=source.chat_model_version,
                             gguf_path=model or settings.gguf_path)
    if source.provider == "auto":
        choice = resolve(replace(settings, chat_model_version=source.chat_model_version))
        if choice.kind == "local":
            return _local_choice(local_settings, choice.reason) if model else choice
        if url and choice.kind == "compatible":
            choice = replace(choice, endpoint=url)
        return replace(choice, model=model) if model else choice
    if source.provider not in KINDS:
        raise ProviderConfigError(f"the provider is {source.provider!r}; use one of auto, "
                                  f"{', '.join(KINDS)}.")
    if source.provider == "local":
        if model and not Path(model).expanduser().is_file():
            raise ProviderConfigError(
                f"the model {model!r} is not a GGUF file; give the path of one, or leave the "
                "model empty for the built-in model.")
        return _local_choice(local_settings, "chosen for this source (local)")
    found = _find(settings, config.env_file_values())
    if source.provider == "compatible" and not (url or found.base_url):
        raise ProviderConfigError(
            "a compatible source needs its server's base URL (e.g. http://localhost:11434/v1): "
            f"give the source one, or set {OPENAI_BASE_URL} (or the openai_base_url setting).")
    if model:
        found = replace(found, deployment=model, openai_model=model)
    if url and source.provider == "compatible":
        found = replace(found, base_url=url)
    return replace(_explicit(source.provider, found, settings),
                   reason=f"chosen for this source ({source.provider})")


def build(choice: ProviderChoice, settings: Settings | None = None) -> Provider:
    """Create the provider for a resolved choice (reads the key here, keeps it private)."""
    settings = settings or config.load_settings()
    if choice.kind == "local":
        from rlhf_desktop.providers.local import LocalProvider

        return LocalProvider(choice.endpoint, n_threads=settings.n_threads,
                             n_ctx=settings.n_ctx, lora_path=choice.adapter or None)
    from rlhf_desktop.providers.openai_client import OpenAIChatProvider

    # Concurrent single-choice requests only when the user says the server handles them
    # (the ``parallel_requests`` setting); see providers/_turn.py.
    parallel = settings.parallel_requests
    if choice.kind == "azure":
        key = config.get_secret(AZURE_KEY)
        if not key:
            raise ProviderConfigError(f"{AZURE_KEY} is not set.")
        return OpenAIChatProvider.from_azure(
            endpoint=choice.endpoint, api_key=key, deployment=choice.model,
            api_version=choice.api_version, settings=settings, parallel_requests=parallel,
        )
    return OpenAIChatProvider.from_openai(
        api_key=config.get_secret(OPENAI_KEY), model=choice.model,
        base_url=choice.endpoint or None, settings=settings, parallel_requests=parallel,
    )


def choose_provider(settings: Settings | None = None) -> tuple[Provider, str]:
    """The provider to use and a one-line reason (logged; shown by the window).

    Raises :class:`~rlhf_desktop.providers.errors.ProviderConfigError` naming the missing
    variable or setting when an explicit choice is incomplete.
    """
    settings = settings or config.load_settings()
    choice = resolve(settings)
    provider = build(choice, settings)
    reason = f"{provider.describe()} — {choice.reason}"
    log.info("provider: %s", reason)
    return provider, reason


def provider_with_model(settings: Settings, kind: str, model: str) -> Provider:
    """The provider of ``kind`` (as configured) with another model: a deployment (Azure),
    a model name (OpenAI, a compatible server), or for the built-in model a tuned version
    (``<stem>+vNNNN``) or the base (``<stem>``). Raises :class:`ProviderConfigError`."""
    if kind == "local":
        source = CandidateSource(name="chat", provider="local",
                                 chat_model_version=tuned_version(model))
    elif kind in KINDS:
        source = CandidateSource(name="chat", provider=kind, model=model.strip())
    else:
        raise ProviderConfigError(f"A chat's own model needs a single provider, not {kind!r}.")
    return build(source_choice(source, settings), settings)
