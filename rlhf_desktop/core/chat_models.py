"""How a tuned chat-model version shows in the built-in provider's model name: the one rule
the provider writes it by and the chat reads it back by (a saved turn records the model name,
so a turn from a tuned version says so after the chat has switched back)."""

from __future__ import annotations

import re

TUNED_SUFFIX = re.compile(r"\+v(\d+)$")
"""The built-in model's tuned versions are named ``<stem>+vNNNN`` (as the provider says)."""


def local_model_name(base: str, version: int) -> str:
    """The name of the built-in model (``version`` 0) or of one of its tuned versions
    (``base`` may itself name a version: its suffix is replaced)."""
    base = TUNED_SUFFIX.sub("", base)
    return f"{base}+v{version:04d}" if version else base


def tuned_version(model: str) -> int:
    """The tuned version a built-in model name carries (0: the base, or not such a name)."""
    found = TUNED_SUFFIX.search(model)
    return int(found.group(1)) if found else 0


def version_name(version: int) -> str:
    """A chat-model version as the window names it (0: the base)."""
    return f"chat model v{version} (tuned)" if version else "the base model"
