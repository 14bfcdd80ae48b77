"""User settings: defaults, overridden by ``settings.json`` in the data folder.

The file is versioned (``"version": 1``); unknown keys are ignored, a newer version is read
as far as it is understood. Provider variables (``.env`` and the environment) override the
provider settings where they are resolved (:mod:`rlhf_desktop.providers.select`), from one
snapshot of the environment (:func:`rlhf_desktop.config.secrets.env_file_values`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rlhf_desktop.config.files import atomic_write_bytes
from rlhf_desktop.config.paths import ConfigError, data_dir
from rlhf_desktop.domain import CandidateSource

SETTINGS_FILENAME = "settings.json"
SETTINGS_VERSION = 1
PROVIDERS: tuple[str, ...] = ("auto", "azure", "openai", "compatible", "local")

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """User settings, stored as JSON in the data folder. Never holds secrets."""

    provider: str = "auto"
    candidates_per_turn: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    system_prompt: str = "You are a helpful assistant."
    retrain_every: int = 5
    train_on_cut_pairs: bool = False
    """Train the reward model on pairs whose rejected reply was cut at max tokens too. Off by
    default: cut replies are the longest, so such pairs teach "shorter wins" (see
    core/pick_rules.py); a low max tokens can leave every pair out, and the error says so."""
    azure_endpoint: str = ""
    azure_deployment: str = ""
    azure_api_version: str = "2024-08-01-preview"
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str = ""
    gguf_path: str = ""
    n_threads: int = 1
    n_ctx: int = 2048
    embedder_path: str = ""
    request_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_retries: int = 3
    chat_model_version: int = 0
    """The built-in model's tuned version to chat with (``rlhf-desktop tune``); 0: the base."""
    parallel_requests: bool = False
    """Send the extra single-choice requests of a server that ignores ``n`` at once
    (only for servers known to run requests in parallel without cutting them)."""
    blind: bool = False
    """Blind labeling: replies in a random order, scores and ranks hidden until the pick."""
    candidate_sources: list[dict[str, Any]] = field(default_factory=list)
    """The arena's candidate sources (:class:`~rlhf_desktop.domain.CandidateSource` as dicts)."""
    arena: bool = False
    """Draw each turn's replies from the candidate sources (identities hidden until the
    label) instead of from the one provider."""
    ranker: str = ""
    """A transformers reward-model folder (TRL RewardTrainer) to rank replies with; "" uses
    the tiny reward model."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field and its allowed range."""
        if self.provider not in PROVIDERS:
            allowed = ", ".join(PROVIDERS)
            raise ConfigError(f"provider must be one of {allowed}, not {self.provider!r}")
        if not 1 <= self.candidates_per_turn <= 8:
            raise ConfigError("candidates_per_turn must be between 1 and 8")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError("top_p must be in (0, 1]")
        if not 1 <= self.max_tokens <= 32768:
            raise ConfigError("max_tokens must be between 1 and 32768")
        if not 1 <= self.retrain_every <= 10000:
            raise ConfigError("retrain_every must be between 1 and 10000")
        if not 1 <= self.n_threads <= 256:
            raise ConfigError("n_threads must be between 1 and 256")
        if self.chat_model_version < 0:
            raise ConfigError("chat_model_version must be 0 (the base model) or a version")
        sources = self.sources()
        names = [src.name.strip() for src in sources]
        if any(not name for name in names):
            raise ConfigError("every candidate source needs a name")
        if len(set(names)) != len(names):
            raise ConfigError("candidate source names must differ (they identify the sources "
                              "on the leaderboard)")
        for src in sources:
            if src.provider not in PROVIDERS:
                raise ConfigError(f"candidate source {src.name!r}: provider must be one of "
                                  f"{', '.join(PROVIDERS)}")
            if not 1 <= src.count <= 8:
                raise ConfigError(f"candidate source {src.name!r}: count must be 1 to 8")
            if src.temperature is not None and not 0.0 <= src.temperature <= 2.0:
                raise ConfigError(f"candidate source {src.name!r}: temperature must be "
                                  "between 0 and 2")
            if src.chat_model_version < 0:
                raise ConfigError(f"candidate source {src.name!r}: chat_model_version must "
                                  "be 0 (the base model) or a version")
        active = [src for src in sources if src.active]
        if self.arena and len(sources) < 2:
            raise ConfigError("the arena needs two or more candidate sources")
        if self.arena and len(active) < 2:
            raise ConfigError(f"the arena needs two or more candidate sources in use "
                              f"({len(active)} of {len(sources)} is on)")
        if self.arena and sum(src.count for src in active) > 8:
            raise ConfigError("the arena's sources ask for more than 8 replies in all")
        if not 256 <= self.n_ctx <= 131072:
            raise ConfigError("n_ctx (the built-in model's context size) must be between 256 "
                              "and 131072 tokens")

    def sources(self) -> list[CandidateSource]:
        """The candidate sources as typed values (raises ConfigError on a malformed one)."""
        out: list[CandidateSource] = []
        for raw in self.candidate_sources:
            if not isinstance(raw, dict):
                raise ConfigError(f"candidate_sources: each entry must be an object, not "
                                  f"{raw!r}")
            try:
                out.append(CandidateSource.from_dict(raw))
            except TypeError as exc:
                raise ConfigError(f"candidate_sources: {exc}") from exc
        return out

    def arena_sources(self) -> list[CandidateSource]:
        """The sources an arena turn asks (the active ones), in order."""
        return [src for src in self.sources() if src.active]

    @staticmethod
    def from_mapping(data: Mapping[str, Any]) -> Settings:
        """Build from a mapping, converting types and ignoring unknown keys."""
        defaults = Settings()
        values: dict[str, Any] = {}
        for f in fields(Settings):
            if f.name not in data or f.name == "version":
                continue
            default = getattr(defaults, f.name)
            raw = data[f.name]
            if isinstance(default, bool) and not isinstance(raw, bool):
                raise ConfigError(f"setting {f.name!r}: use true or false, not {raw!r}")
            try:
                values[f.name] = type(default)(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"setting {f.name!r}: cannot use {raw!r} ({exc})") from exc
        settings = Settings(**values)
        settings.validate()
        return settings


def settings_path() -> Path:
    """The settings file."""
    return data_dir() / SETTINGS_FILENAME


def load_settings() -> Settings:
    """Settings from the data folder; defaults when the file is missing.

    A file that is not valid JSON is kept aside as ``settings.json.bad`` (never lost) and
    defaults are used, with a warning in the log.
    """
    path = settings_path()
    if not path.exists():
        return Settings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Settings.from_mapping(data)
    except (ValueError, ConfigError) as exc:
        backup = path.with_name(path.name + ".bad")
        path.replace(backup)
        log.warning("settings file %s was unreadable (%s); kept as %s, using defaults",
                    path, exc, backup)
        return Settings()


def save_settings(settings: Settings) -> None:
    """Write settings atomically."""
    settings.validate()
    path = settings_path()
    text = json.dumps({"version": SETTINGS_VERSION, **asdict(settings)}, indent=2,
                      sort_keys=True)
    atomic_write_bytes(path, text.encode("utf-8"))


