"""Plain data types shared by every layer. Imports nothing from the project."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
PairSource = Literal["pick", "import", "edit"]
PAIR_SOURCES: tuple[str, ...] = ("pick", "import", "edit")
LABEL_KINDS: tuple[str, ...] = ("pick", "tie", "all_bad", "ranking", "edit", "import")
"""What a label says: one reply is best (``pick``), two or more are equally good (``tie``,
no pairs), every reply is bad (``all_bad``, a flag, no pairs), an order (``ranking``), the
user's own rewrite is best (``edit``), or an imported preference (``import``)."""
NO_PAIR_KINDS: tuple[str, ...] = ("tie", "all_bad")
"""Label kinds that are stored and exported but never turned into preference pairs."""


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
    position: int | None = None
    """Where the card was shown (0-based, left to right, top to bottom), once displayed."""
    source: str = "model"
    """``model`` (generated) or ``edit`` (the user's rewrite of ``edited_from``)."""
    edited_from: int | None = None
    origin: dict[str, Any] | None = None
    """In an arena turn: the candidate source it came from (:meth:`CandidateSource.origin`:
    name, provider, model, temperature, chat_model_version); None in an ordinary turn."""


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
    blind: bool = False
    """Shown in a random order without scores or ranks until the user labeled it."""
    label_kind: str | None = None
    """The kind of the turn's label (``pick``, ``tie``, ``all_bad``, ``edit``, ``ranking``),
    if any."""
    ranked_candidate_ids: tuple[int, ...] = ()
    """The replies the label ranks: a ranking's order (best first), or the tied replies of a
    tie (one rank shared, in no order); empty for the other kinds."""
    skipped: bool = False
    shown_at: float | None = None
    """When (``time.time()``) the whole turn was first on screen (for the time to pick)."""

    @property
    def prompt(self) -> str:
        """The last user message of the turn."""
        return last_user_text(self.messages)

    @property
    def labeled(self) -> bool:
        """Whether the turn holds a label of any kind (a skip is none)."""
        return self.chosen_candidate_id is not None or self.label_kind is not None

    @property
    def hidden(self) -> bool:
        """A blind turn whose ranking is still hidden (not labeled, not skipped)."""
        return self.blind and not self.labeled and not self.skipped


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
    weight: float = 1.0
    """How much the pair counts in training (a full ranking's pairs weigh 2/N each)."""
    metadata: dict[str, Any] | None = field(default=None, compare=False)
    """Provenance (label kind, provider, model, temperature, seed, reward-model version and
    scores at display time, display positions, blind, time to pick) when read from the
    database; see :func:`rlhf_desktop.storage.provenance.pair_metadata`."""

    @property
    def prompt_text(self) -> str:
        """The last user message of the prompt."""
        return last_user_text(self.prompt)


@dataclass(frozen=True)
class Label:
    """One label of a turn (see :data:`LABEL_KINDS`) or one imported preference: a group of
    pairs saved together (none for a tie or all-bad label)."""

    id: int
    created_at: float
    source: str
    turn_id: int | None
    chosen_candidate_id: int | None
    reason: str | None
    model_top_candidate_id: int | None
    pair_count: int
    kind: str = "pick"
    blind: bool = False


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


@dataclass(frozen=True)
class Shown:
    """What the user saw when labeling a turn: the provenance a label keeps."""

    blind: bool = False
    time_to_pick_s: float | None = None
    reward_version: int | None = None
    scores: dict[int, float] = field(default_factory=dict)
    """Candidate id → the reward model's score at display time (hidden in a blind turn)."""
    positions: dict[int, int] = field(default_factory=dict)
    """Candidate id → display position (0-based)."""

    @staticmethod
    def of(turn: Turn, now: float) -> Shown:
        """The provenance of a label given on ``turn`` at ``now`` (``time.time()``)."""
        scores = {c.id: c.score for c in turn.candidates
                  if c.id is not None and c.score is not None and c.model_version is not None}
        versions = [c.model_version for c in turn.candidates if c.model_version is not None]
        positions = {c.id: c.position for c in turn.candidates
                     if c.id is not None and c.position is not None}
        waited = None if turn.shown_at is None else max(0.0, now - turn.shown_at)
        return Shown(turn.blind, waited, versions[0] if versions else None, scores, positions)


@dataclass(frozen=True)
class CandidateSource:
    """One entry of an arena: where ``count`` of a turn's candidates come from.

    An arena turn asks every source of the chosen arena for its ``count`` replies and shows
    them together, with the sources' names hidden until the user labels the turn.
    """

    name: str
    """What the user calls it; shown after the pick and as the leaderboard's row."""
    provider: str = "auto"
    """``auto`` (the chat's provider), ``azure``, ``openai``, ``compatible`` or ``local``."""
    model: str = ""
    """Deployment or model name; "" = the provider's configured one."""
    temperature: float | None = None
    """None: the chat's temperature."""
    count: int = 2
    """How many of the turn's replies come from this source."""
    chat_model_version: int = 0
    """For ``local``: 0 the base model, else a tuned chat-model version."""
    base_url: str = ""
    """For ``compatible``: the server ("" = the configured one)."""
    active: bool = True
    """In the arena now; an inactive source stays in the list (and on the leaderboard)
    without giving replies, e.g. while two others are compared head to head."""

    def origin(self, temperature: float) -> dict[str, Any]:
        """What a candidate from this source records (``Candidate.origin``), with the
        temperature actually used."""
        return {"name": self.name, "provider": self.provider, "model": self.model,
                "temperature": temperature, "chat_model_version": self.chat_model_version}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe mapping (the settings file's form)."""
        return {"name": self.name, "provider": self.provider, "model": self.model,
                "temperature": self.temperature, "count": self.count,
                "chat_model_version": self.chat_model_version, "base_url": self.base_url,
                "active": self.active}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> CandidateSource:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {k: data[k] for k in CandidateSource.__dataclass_fields__ if k in data}
        return CandidateSource(**known)
