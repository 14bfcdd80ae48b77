"""The arena's settings: which candidate sources a turn draws its replies from.

An arena turn asks each :class:`~rlhf_desktop.domain.CandidateSource` for its ``count``
replies (different providers, models, deployments, temperatures or chat-model versions) and
shows them together, blind: random order, no scores, no source names until the user labels
the turn. Every reply records its source in ``Candidate.origin``; the leaderboard on the model
page is computed from those labels.

This service keeps the list and the on/off switch in the settings file; the session builds
the turn's providers from it (see :mod:`rlhf_desktop.providers.arena`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from rlhf_desktop import config
from rlhf_desktop.config import ConfigError, Settings
from rlhf_desktop.domain import CandidateSource

__all__ = ["ArenaService", "CandidateSource", "comparison_banner"]


class ArenaService:
    """Read and change the candidate sources and whether turns use them."""

    def __init__(self, settings: Callable[[], Settings],
                 apply: Callable[[Settings], None]) -> None:
        """``settings`` returns the session's current settings; ``apply`` saves new ones
        and makes the session use them (rebuilding the provider)."""
        self._settings = settings
        self._apply = apply

    def sources(self) -> list[CandidateSource]:
        """The configured sources, in the order the user gave them."""
        return self._settings().sources()

    @property
    def enabled(self) -> bool:
        """Whether turns draw their replies from the sources."""
        return self._settings().arena

    def describe(self) -> str:
        """One line for the window, e.g. ``Arena: base (2) vs tuned v3 (2)``."""
        sources = self.sources()
        if not sources:
            return "Arena: no candidate sources yet (add them in Settings)"
        active = [s for s in sources if s.active]
        off = len(sources) - len(active)
        return "Arena: " + " vs ".join(f"{s.name} ({s.count})" for s in active) + (
            f" ({off} more off)" if off else "")

    def banner(self) -> str:
        """The chat page's line while the arena draws the replies (see
        :func:`comparison_banner`)."""
        settings = self._settings()
        return comparison_banner(settings.sources(), settings.candidates_per_turn)

    def set_sources(self, sources: list[CandidateSource]) -> None:
        """Replace the list (validated; raises ConfigError with a message for the user).
        Turning the arena off is left to the caller; a list too short for an enabled arena
        is refused."""
        self._save(replace(self._settings(), candidate_sources=[s.to_dict() for s in sources]))

    def add_source(self, source: CandidateSource) -> CandidateSource:
        """Add one source (e.g. a tuned model offered after tuning); a name already taken
        gets a number (``tuned v3 (2)``). Returns the source as added."""
        taken = {s.name for s in self.sources()}
        name, k = source.name, 2
        while name in taken:
            name, k = f"{source.name} ({k})", k + 1
        added = replace(source, name=name)
        self.set_sources([*self.sources(), added])
        return added

    def use_only(self, names: list[str]) -> None:
        """Make exactly the sources ``names`` active (the others stay in the list, off) and
        turn the arena on: a head-to-head of those sources."""
        wanted = set(names)
        sources = [replace(s, active=s.name in wanted) for s in self.sources()]
        self._save(replace(self._settings(), arena=True,
                           candidate_sources=[s.to_dict() for s in sources]))

    def set_enabled(self, on: bool) -> None:
        """Turn the arena on or off (on needs two or more sources)."""
        self._save(replace(self._settings(), arena=on))

    def _save(self, settings: Settings) -> None:
        settings.validate()  # ConfigError before anything is written
        config.save_settings(settings)
        self._apply(settings)


def comparison_banner(sources: list[CandidateSource], usual: int) -> str:
    """What the chat page says while a blind comparison (the arena) draws the replies: how
    many replies a turn shows and from which sources (a head-to-head shows 2, not the usual
    ``usual``), that the sources show after the pick, and how to end it. Without it the
    replies per turn changed without a word and the built-in model's banner went away."""
    active = [s for s in sources if s.active]
    total = sum(s.count for s in active)
    each = " and ".join(f"{s.count} from {s.name}" for s in active)
    return (f"Blind comparison: each turn shows {total} replies, {each}, in random order; "
            "which one wrote which shows after you pick. To chat with one model again "
            f"({usual} replies a turn), choose it in \"from\" above the chat or in \"Chat "
            "with\" on the Model page.")


def check(settings: Settings) -> str | None:
    """Why the settings' arena cannot run as configured, or None."""
    try:
        settings.validate()
    except ConfigError as exc:
        return str(exc)
    return None
