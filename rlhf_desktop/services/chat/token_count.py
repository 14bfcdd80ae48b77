"""How many tokens the next turn would send, for the count under the message box.

Counted with the model's own tokenizer where the app has it: the built-in model's
(``count_tokens`` of the provider, when it has one), tiktoken for OpenAI and Azure models
once its encoding is on this machine; everything else is estimated (characters / 4) and
says "about". tiktoken's wheel ships no encodings: it downloads them at first use, so the
encoding is loaded in a worker thread (:meth:`TokenCounter.prepare`) and the count stays an
estimate until that has worked (offline, for good).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlhf_desktop.domain import Message

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
PER_MESSAGE = 4
"""Tokens a chat template adds around each message (role, separators), roughly."""
UNKNOWN_CONTEXT_SHOWN = 4000
"""With the model's context unknown, the count shows from this many tokens on."""
KNOWN_CONTEXT = (
    ("gpt-4.1", 1_047_576), ("gpt-4o", 128_000), ("gpt-4-turbo", 128_000),
    ("gpt-4-32k", 32_768), ("gpt-4", 8_192), ("gpt-3.5-turbo", 16_385), ("o1", 200_000),
    ("o3", 200_000), ("o4", 200_000), ("gpt-5", 400_000),
)
"""OpenAI models' context sizes by name prefix (longest prefixes first where they overlap)."""


def estimate(text: str) -> int:
    """Characters / 4: a rough count for English text."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def known_context(model: str) -> int | None:
    """The context of a well-known OpenAI model by its name, else None."""
    name = model.lower()
    for prefix, size in KNOWN_CONTEXT:
        if name.startswith(prefix):
            return size
    return None


@dataclass(frozen=True)
class TokenCount:
    """The size of the next turn: its messages, the system prompt and the new text."""

    tokens: int
    limit: int | None
    """The model's context in tokens, when known."""
    exact: bool
    """Counted with the model's tokenizer (else estimated)."""
    how: str
    """What counted: "the built-in model's tokenizer", "tiktoken (o200k_base)", or why it
    is an estimate."""
    reply_tokens: int = 0
    """The most a reply may take (the chat's max tokens); 0: not said."""
    context_settable: bool = False
    """The context size is a setting of this app (the built-in model), so raising it helps."""

    @property
    def matters(self) -> bool:
        """Whether to show it: above half the context (or a few thousand tokens when the
        context is unknown)."""
        if self.limit:
            return self.tokens > self.limit // 2
        return self.tokens >= UNKNOWN_CONTEXT_SHOWN

    @property
    def over(self) -> bool:
        """More than the model takes."""
        return self.limit is not None and self.tokens > self.limit

    @property
    def room(self) -> int | None:
        """Tokens of the context left for the replies (None: the context is not known)."""
        return None if self.limit is None else max(self.limit - self.tokens, 0)

    @property
    def squeezed(self) -> bool:
        """It fits, but leaves the replies less room than max tokens: they will be cut when
        the context fills (a new user's replies stopped at 100 tokens, read as "cut at max
        tokens" with max tokens at 256, and the counter had said "2,026 of 2,048")."""
        room = self.room
        return room is not None and not self.over and 0 < self.reply_tokens and \
            room < self.reply_tokens

    def text(self) -> str:
        """E.g. ``about 9,300 of 2,048 tokens`` or ``1,210 tokens``."""
        amount = f"{self.tokens:,}" if self.exact else f"about {self.tokens:,}"
        if self.limit:
            return f"{amount} of {self.limit:,} tokens"
        return f"{amount} tokens"


class TokenCounter:
    """Counts with tiktoken, a given tokenizer, or the estimate."""

    def __init__(self) -> None:
        self._encodings: dict[str, Any] = {}
        self._failed: set[str] = set()
        self._loading: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def encoding_name(model: str) -> str:
        """tiktoken's encoding for an OpenAI model name (o200k_base for unknown names: the
        encoding of every current OpenAI chat model)."""
        try:
            import tiktoken.model
        except ImportError:
            return "o200k_base"
        try:
            return str(tiktoken.model.encoding_name_for_model(model))
        except KeyError:
            return "o200k_base"

    def prepare(self, model: str) -> None:
        """Load tiktoken's encoding for ``model`` in a daemon thread (it may download it
        once; offline it fails and the count stays an estimate)."""
        name = self.encoding_name(model)
        with self._lock:
            if name in self._encodings or name in self._failed or name in self._loading:
                return
            self._loading.add(name)
        threading.Thread(target=self._load, args=(name,), name="tiktoken-load",
                         daemon=True).start()

    def _load(self, name: str) -> None:
        try:
            import tiktoken

            encoding = tiktoken.get_encoding(name)
        except Exception as exc:  # not installed, offline, no cache: estimate
            log.info("tiktoken encoding %s is not available (%s); token counts are estimates",
                     name, type(exc).__name__)
            with self._lock:
                self._failed.add(name)
                self._loading.discard(name)
            return
        with self._lock:
            self._encodings[name] = encoding
            self._loading.discard(name)

    def tiktoken_for(self, model: str) -> tuple[Callable[[str], int] | None, str]:
        """A counting function for an OpenAI model, or None with the reason."""
        name = self.encoding_name(model)
        with self._lock:
            encoding = self._encodings.get(name)
            failed = name in self._failed
        if encoding is not None:
            return (lambda text: len(encoding.encode(text, disallowed_special=()))), \
                f"tiktoken ({name})"
        if failed:
            return None, f"an estimate: tiktoken's {name} encoding is not on this machine"
        return None, "an estimate while tiktoken loads"

    def count(self, messages: Sequence[Message], system_prompt: str, *, kind: str,
              model: str, limit: int | None, tokenizer: Callable[[str], int] | None = None,
              reply_tokens: int = 0) -> TokenCount:
        """The size of ``messages`` with ``system_prompt`` for a provider ``kind`` and
        ``model``; ``tokenizer`` is the model's own (the built-in model's); ``reply_tokens``
        the chat's max tokens (the room a reply wants)."""
        how = "an estimate (characters / 4)"
        count: Callable[[str], int] | None = tokenizer
        if tokenizer is not None:
            how = "the built-in model's tokenizer"
        elif kind in ("azure", "openai"):
            self.prepare(model)
            count, how = self.tiktoken_for(model)
        texts = [system_prompt] if system_prompt else []
        texts += [m.content for m in messages]
        exact = count is not None
        total = 0
        for text in texts:
            if count is not None:
                try:
                    total += int(count(text))
                    continue
                except Exception:  # a tokenizer that fails: estimate this one
                    exact = False
            total += estimate(text)
        total += PER_MESSAGE * len(texts)
        return TokenCount(total, limit, exact, how, reply_tokens, kind == "local")
