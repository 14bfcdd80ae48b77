"""Plain data types shared by every layer. Imports nothing from the project."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
PairSource = Literal["pick", "import", "edit"]
PAIR_SOURCES: tuple[str, ...] = ("pick", "import", "edit")


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        """The OpenAI-style ``{"role", "content"}`` mapping."""
        return {"role": self.role, "content": self.content}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Message:
        """Build from an OpenAI-style mapping."""
        return Message(role=str(data["role"]), content=str(data["content"]))


def last_user_text(messages: list[Message] | tuple[Message, ...]) -> str:
    """The content of the last user message, or "" when there is none."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


@dataclass(frozen=True)
class SamplingParams:
    """What a provider is asked for on one turn."""

    n: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    system_prompt: str = ""
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe mapping."""
        return {
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "system_prompt": self.system_prompt,
            "seed": self.seed,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SamplingParams:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {k: data[k] for k in SamplingParams.__dataclass_fields__ if k in data}
        return SamplingParams(**known)


@dataclass
class Candidate:
    """One generated reply of a turn."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    score: float | None = None
    model_version: int | None = None
    error: str | None = None
    id: int | None = None
    turn_id: int | None = None


@dataclass
class Turn:
    """One request to a provider: the messages sent and the candidates that came back."""

    conversation_id: int
    messages: list[Message]
    provider: str
    model: str
    params: SamplingParams
    candidates: list[Candidate] = field(default_factory=list)
    id: int | None = None
    created_at: float | None = None
    chosen_candidate_id: int | None = None

    @property
    def prompt(self) -> str:
        """The last user message of the turn."""
        return last_user_text(self.messages)


@dataclass(frozen=True)
class PreferencePair:
    """One preference: ``chosen`` was preferred over ``rejected`` after ``prompt``.

    ``prompt`` holds the conversation up to and including the last user message.
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    reason: str | None = None
    source: str = "pick"
    created_at: float | None = None
    id: int | None = None
    label_id: int | None = None
    chosen_candidate_id: int | None = None
    rejected_candidate_id: int | None = None

    @property
    def prompt_text(self) -> str:
        """The last user message of the prompt."""
        return last_user_text(self.prompt)


@dataclass(frozen=True)
class Label:
    """One thumbs-up pick (or one imported preference): a group of pairs saved together."""

    id: int
    created_at: float
    source: str
    turn_id: int | None
    chosen_candidate_id: int | None
    reason: str | None
    model_top_candidate_id: int | None
    pair_count: int


@dataclass(frozen=True)
class ModelVersion:
    """A trained reward model recorded in the database."""

    version: int
    created_at: float
    path: str
    metrics: dict[str, Any]
    pairs: int
    labels: int

    @property
    def cv_accuracy(self) -> float | None:
        """Cross-validated pairwise accuracy, when training measured it."""
        value = self.metrics.get("cv_accuracy")
        return None if value is None else float(value)


@dataclass
class Conversation:
    """A chat in the sidebar."""

    id: int
    title: str
    created_at: float
    updated_at: float
