"""The models a chat can use: a chat's own model as a provider, the list of models the
provider offers, and the size of the next turn in tokens (a mixin of
:class:`~rlhf_desktop.services.session.AppSession`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.core.chat_models import local_model_name
from rlhf_desktop.providers import Provider, ProviderError
from rlhf_desktop.providers.select import provider_with_model
from rlhf_desktop.services.chat.conversations import ConversationService
from rlhf_desktop.services.chat.token_count import TokenCount, TokenCounter, known_context

if TYPE_CHECKING:
    from rlhf_desktop.services.chat.service import ChatService
    from rlhf_desktop.services.runner import BackgroundRunner
    from rlhf_desktop.services.tuning.service import TuningService

log = logging.getLogger(__name__)


class ChatModels:
    """Set up by :meth:`_init_chat_models`; the session provides the attributes below."""

    settings: Settings
    provider: Provider | None
    provider_error: str | None
    chat: ChatService | None
    conversations: ConversationService
    tuning: TuningService
    runner: BackgroundRunner

    def _init_chat_models(self) -> None:
        self._model_providers: dict[tuple[str, str], Provider] = {}
        self._tokens = TokenCounter()

    @property
    def provider_kind(self) -> str:
        """``azure``, ``openai``, ``compatible``, ``local``, ``arena`` or "" while none is
        chosen."""
        return "" if self.provider is None else self.provider.name

    async def provider_for_model(self, model: str) -> Provider:
        """The chat's provider with another model (a chat's own), built in the runner's
        ``load`` lane once and kept until the provider changes. Raises ProviderError."""
        kind = self.provider_kind
        key = (kind, model)
        if key not in self._model_providers:
            self._model_providers[key] = await self.runner.call(
                provider_with_model, self.settings, kind, model, lane="load")
        return self._model_providers[key]

    def count_tokens(self, conversation_id: int | None, text: str) -> TokenCount:
        """How big the next turn would be if ``text`` were sent in the chat now: its
        history, its system prompt and ``text``, against the model's context when known
        (the built-in model's ``n_ctx``, what a context-length error said, or a well-known
        OpenAI model's)."""
        chat = self.conversations.chat_settings(conversation_id)
        messages = self.conversations.next_messages(conversation_id, text)
        system = chat.system_prompt
        if system is None:
            system = self.settings.system_prompt
        provider = self.provider
        kind = "" if provider is None else provider.name
        model = chat.model or ("" if provider is None else provider.model)
        tokenizer = None
        if kind == "local" and getattr(provider, "load_seconds", None) is not None:
            tokenizer = getattr(provider, "count_tokens", None)  # its own, once loaded
        learned = {} if self.chat is None else self.chat.context_limits
        # By name only on OpenAI itself: Azure deployments and local servers' models are
        # named by their owners.
        limit = (self.settings.n_ctx if kind == "local" else learned.get((kind, model))
                 or (known_context(model) if kind == "openai" else None))
        return self._tokens.count(messages, system, kind=kind, model=model, limit=limit,
                                  tokenizer=tokenizer if callable(tokenizer) else None,
                                  reply_tokens=self.settings.max_tokens)

    async def list_models(self) -> list[str]:
        """The models a chat can use with the provider: what an OpenAI-compatible server or
        OpenAI lists (``GET /models``), the configured deployments on Azure (the one in use
        and the arena sources'), the built-in model and its tuned versions. Raises
        ProviderError (safe to show) when the server could not be asked."""
        provider = self.provider
        if provider is None:
            raise ProviderError(self.provider_error or "No provider is configured yet.")
        kind = provider.name
        if kind == "local":
            versions = await self.runner.call(self.tuning.versions, lane="load")
            return [local_model_name(provider.model, v) for v in [0, *versions]]
        lister = getattr(provider, "list_models", None)
        if lister is None:  # the arena: its sources name their own models
            return [provider.model] if provider.model else []
        models: list[str] = list(await lister())
        if kind == "azure":
            try:
                sources = self.settings.arena_sources()
            except config.ConfigError:
                sources = []
            models += [src.model for src in sources if src.provider == "azure" and src.model]
        return sorted(set(models), key=str.lower)

    async def _close_model_providers(self) -> None:
        providers, self._model_providers = list(self._model_providers.values()), {}
        for provider in providers:
            try:
                await provider.aclose()
            except Exception:  # closing must never break the session
                log.warning("closing a chat's provider failed", exc_info=True)
