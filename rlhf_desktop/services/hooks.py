"""Change hooks the services fire after they change state (Anki's ``noun_did_verb`` style).

A page never has to remember to notify anybody after a write: the service that wrote fires
the hook, and whoever renders that state listens. The window's Qt adapter forwards each
hook to a signal; the CLI ignores them.

Every hook of an :class:`~rlhf_desktop.services.session.AppSession`:

========================== ===================================================================
``provider_did_change``    the provider was (re)chosen, or could not be (``session.provider_error``)
``reward_did_load``        the reward model and the embedder are loaded: ranking works
``retrain_did_update``     ``(RetrainStatus)``: labels to the next run, progress of a run
``model_did_train``        ``(ModelVersion)``: another reward-model version is in use (trained,
                           or chosen with ``ModelService.use``): re-rank what waits for a pick
``training_did_fail``      ``(str)``: a run failed; the message is safe to show
``labels_did_change``      picks, undos, imports or deletions changed the labels
``conversations_did_change`` a conversation was created, renamed or deleted
``turn_did_change``        ``(TurnView)``: a shown turn changed (sent, a reply finished, saved,
                           labeled, undone, re-ranked); the immutable snapshot to render
                           (:mod:`rlhf_desktop.services.turns`)
``tune_did_progress``      ``(TuneSnapshot)``: the chat-model tuning moved (a progress line of
                           the run, its state, the pairs' or the effect's measurement, the
                           tune extra's install, the remote job); the run's snapshot
                           (:mod:`rlhf_desktop.services.tuning.service`)
========================== ===================================================================

Hooks run on the thread that fired them; the session fires them on its event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, ParamSpec

if TYPE_CHECKING:
    from rlhf_desktop.domain import ModelVersion
    from rlhf_desktop.services.ranking.retraining import RetrainStatus
    from rlhf_desktop.services.tuning.state import TuneSnapshot
    from rlhf_desktop.services.turns.view import TurnView

log = logging.getLogger(__name__)

P = ParamSpec("P")


class Hook(Generic[P]):
    """A named list of callbacks. A callback that raises is logged, never propagated."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[P, None]] = []

    def append(self, callback: Callable[P, None]) -> None:
        """Call ``callback`` every time the hook fires."""
        self._callbacks.append(callback)

    def remove(self, callback: Callable[P, None]) -> None:
        """Stop calling ``callback`` (no error when it was not registered)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for callback in list(self._callbacks):
            try:
                callback(*args, **kwargs)
            except Exception:  # one bad listener must not break the service that fired
                log.exception("a %s listener failed", self.name)

    def __len__(self) -> int:
        return len(self._callbacks)

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self)} listeners>"


@dataclass
class SessionHooks:
    """Every hook of a session (the table in this module's docstring)."""

    provider_did_change: Hook[[]] = field(default_factory=lambda: Hook("provider_did_change"))
    reward_did_load: Hook[[]] = field(default_factory=lambda: Hook("reward_did_load"))
    retrain_did_update: Hook[[RetrainStatus]] = field(
        default_factory=lambda: Hook("retrain_did_update"))
    model_did_train: Hook[[ModelVersion]] = field(
        default_factory=lambda: Hook("model_did_train"))
    model_did_reject: Hook[[ModelVersion]] = field(
        default_factory=lambda: Hook("model_did_reject"))
    training_did_fail: Hook[[str]] = field(default_factory=lambda: Hook("training_did_fail"))
    labels_did_change: Hook[[]] = field(default_factory=lambda: Hook("labels_did_change"))
    conversations_did_change: Hook[[]] = field(
        default_factory=lambda: Hook("conversations_did_change"))
    turn_did_change: Hook[[TurnView]] = field(default_factory=lambda: Hook("turn_did_change"))
    tune_did_progress: Hook[[TuneSnapshot]] = field(
        default_factory=lambda: Hook("tune_did_progress"))
