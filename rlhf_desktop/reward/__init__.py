"""The reward model: embeddings, TinyRewardModel (Bradley-Terry), training.

``from rlhf_desktop.reward import TinyRewardModel`` (the seed's API) imports lazily, so
``import rlhf_desktop.reward.signing`` and friends stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlhf_desktop.reward.model import ModelFileError, TinyRewardModel

__all__ = ["ModelFileError", "TinyRewardModel"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rlhf_desktop.reward import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
