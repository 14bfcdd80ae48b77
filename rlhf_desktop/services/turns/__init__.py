"""One turn's lifecycle, Qt-free: from send through streaming to its label and undo.

:class:`TurnLifecycle` (``session.turns``) owns what a page shows of a turn: the display
order, whether the turn is blind and still hidden, which replies are whole and pickable,
each reply's state and (once revealed) its score and source, the turn's label and what
undo would do. It also runs the turn: :meth:`TurnLifecycle.run` waits for the provider,
sends, streams and settles it, and says how the send ended (:data:`OUTCOMES`). After every
change it publishes an immutable :class:`TurnView` through the session's
``turn_did_change`` hook; widgets render the snapshot and send intents
(:meth:`TurnLifecycle.pick`, :meth:`~TurnLifecycle.undo`, ...), holding no turn state of
their own. Labels go through :class:`~rlhf_desktop.services.labels.labeling.LabelingService` (its
rules, its undo stack); the order and blindness rules live in :mod:`.order`.
"""

from rlhf_desktop.services.turns.lifecycle import NO_PROVIDER, ChatSource, Refused, TurnLifecycle
from rlhf_desktop.services.turns.order import blind_turn, display_order, is_ranked
from rlhf_desktop.services.turns.view import (
    COMPLETE,
    ERROR,
    FAILED,
    OUTCOMES,
    STOPPED,
    UNSENT,
    ReplyView,
    TurnView,
    UndoView,
    reply_state,
)

__all__ = ["COMPLETE", "ERROR", "FAILED", "NO_PROVIDER", "OUTCOMES", "STOPPED", "UNSENT",
           "ChatSource", "Refused", "ReplyView", "TurnLifecycle", "TurnView", "UndoView",
           "blind_turn", "display_order", "is_ranked", "reply_state"]
