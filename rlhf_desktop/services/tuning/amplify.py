"""RM-amplified tuning: the user's reward model labels more on-policy pairs for a tune.

The user's picks train the reward model. Before a tune, the chat model the user chats with
answers the user's own past prompts again, :data:`N` fresh replies each (new seeds, the chat's
sampling settings, the built-in provider in a low-priority child process); the reward model
scores them, and its best reply against its worst becomes one extra pair (best-vs-worst, as in
SimPO's on-policy "Instruct" setting). The tune trains on the user's pairs plus these.

Two guards decide whether the reward model may label anything (:func:`gate`, :func:`label`):

* **Accuracy on pairs it never saw** ≥ :data:`MIN_ACCURACY` (the version's cross-validated
  accuracy). A DPO pair labelled with error rate ε pulls the model the right way with weight
  1 − 2ε of a clean pair: 0.4 at 70 % accuracy, 0.2 at 60 %, nothing at 50 %, while each
  extra pair costs as much tuning time as a human one. Below 70 % the extra pairs would mostly
  spend the user's time budget on noise, so the tune uses the user's pairs alone.
* **Confidence per pair**: the model's own P(best ≻ worst) (Bradley-Terry, its calibrated
  temperature) ≥ :data:`MIN_CONFIDENCE`; a reward model is more accurate on its wide
  margins than on average, so only those are kept.

Only whole replies compete (:func:`competing`, by the pick rules: not failed, not empty, not
cut at max tokens) and identical replies never make a pair (:func:`same_reply`).

The pairs never enter the database: they are written to the tune run's folder
(``amplified.jsonl``, every line marked ``"source": "amplified"``), so they are never exported
or counted as the user's labels. The run's ``amplification.json`` says what was done and why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlhf_desktop.core.pick_rules import is_cut, is_whole_reply, reply_key, same_reply
from rlhf_desktop.domain import Candidate, Message, SamplingParams

N = 4
"""Fresh replies per past prompt."""
MIN_ACCURACY = 0.70
"""The reward model labels pairs only when its accuracy on pairs it never saw reaches this."""
MIN_CONFIDENCE = 0.75
"""A pair is kept only when the reward model's P(best ≻ worst) reaches this."""
PROMPTS = 200
"""Past prompts answered again at most (newest first)."""
SEED = 90_000
"""Seeds of the fresh replies: prompt i uses SEED + 10 i onwards (never the chat's own)."""
SOURCE = "amplified"
FILE = "amplified.jsonl"
REPORT_FILE = "amplification.json"


@dataclass(frozen=True)
class Gate:
    """Whether the reward model may label pairs, and the sentence that says why."""

    open: bool
    accuracy: float | None
    reason: str


def gate(accuracy: float | None, version: int | None) -> Gate:
    """The accuracy guard (see the module docstring)."""
    if version is None or accuracy is None:
        return Gate(False, accuracy, "no trained reward model with a measured accuracy yet, "
                    "so the tune uses your pairs only")
    shown = f"{accuracy:.0%}"
    if accuracy < MIN_ACCURACY:
        return Gate(False, accuracy, f"reward model v{version} is right on {shown} of pairs "
                    f"it never saw (below {MIN_ACCURACY:.0%}), so the tune uses your pairs only")
    return Gate(True, accuracy, f"reward model v{version} is right on {shown} of pairs it "
                "never saw, so it labels extra pairs from fresh replies to your past prompts")


Reply = tuple[str, str | None]
"""A reply's text and finish reason (``length``: cut at max tokens; None: failed)."""


def candidates(replies: Sequence[Reply]) -> list[Candidate]:
    """Replies as the candidates the pick rules judge (a failed one carries an error)."""
    return [Candidate(index=i, text=text, finish_reason=finish,
                      error=None if finish is not None else "failed")
            for i, (text, finish) in enumerate(replies)]


def competing(replies: Sequence[Reply]) -> list[Candidate]:
    """The replies that may compete: whole (:func:`is_whole_reply`) and not cut at max tokens
    (:func:`is_cut`); a cut reply is never the chosen side, and a pair against a cut reply
    mostly teaches "finish", which the user's own pairs already do."""
    return [c for c in candidates(replies) if is_whole_reply(c) and not is_cut(c)]


def label(prompt: Sequence[Message], replies: Sequence[Reply], scores: Sequence[float],
          temperature: float) -> dict[str, Any] | None:
    """The reward model's best whole reply against its worst, as a ``trl-conversational``
    line marked ``"source": "amplified"``; None when fewer than two different whole replies
    or when the model is not sure enough (P(best ≻ worst) < :data:`MIN_CONFIDENCE`)."""
    if len(replies) != len(scores):
        raise ValueError("one score per reply")
    ok = competing(replies)
    if len(ok) < 2:
        return None
    best = max(ok, key=lambda c: scores[c.index])
    worst = min(ok, key=lambda c: scores[c.index])
    if best is worst or same_reply(best.text, worst.text):
        return None
    margin = scores[best.index] - scores[worst.index]
    p = 1.0 / (1.0 + math.exp(-margin / max(temperature, 1e-6)))
    if p < MIN_CONFIDENCE:
        return None
    return {"prompt": [m.to_dict() for m in prompt],
            "chosen": [{"role": "assistant", "content": best.text}],
            "rejected": [{"role": "assistant", "content": worst.text}],
            "source": SOURCE, "p_preferred": round(p, 4)}


@dataclass
class Report:
    """What one amplification did (``amplification.json`` in the run folder)."""

    used: bool
    reason: str
    accuracy: float | None = None
    prompts: int = 0
    replies: int = 0
    pairs: int = 0
    unsure: int = 0
    """Prompts whose best and worst the reward model could not tell apart confidently."""
    not_whole: int = 0
    """Prompts with fewer than two different whole replies."""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)

    def words(self) -> str:
        """One sentence for the Tune panel."""
        if not self.used:
            return f"Your pairs only: {self.reason}."
        return (f"Your pairs plus {self.pairs} your reward model labelled ({self.reason}; "
                f"{self.prompts} past prompts answered again, {self.unsure} left out as "
                "unsure).")


def label_all(prompts: Sequence[Sequence[Message]], replies: Sequence[Sequence[Reply]],
              score: Callable[[str, list[str]], list[float]], temperature: float
              ) -> tuple[list[dict[str, Any]], int, int]:
    """:func:`label` for every prompt; (lines, unsure, not whole). ``score(last user
    message, texts)`` is the reward model's."""
    lines: list[dict[str, Any]] = []
    unsure = not_whole = 0
    for prompt, got in zip(prompts, replies, strict=True):
        if len({reply_key(c.text) for c in competing(got)}) < 2:
            not_whole += 1
            continue
        last_user = next((m.content for m in reversed(prompt) if m.role == "user"), "")
        line = label(prompt, got, score(last_user, [t for t, _ in got]), temperature)
        if line is None:
            unsure += 1
        else:
            lines.append(line)
    return lines, unsure, not_whole


def amplify(run_dir: Path, prompts: Sequence[tuple[Message, ...]], params: SamplingParams,
            chat_version: int, accuracy: float | None, reward_version: int | None,
            score: Callable[[str, list[str]], list[float]], temperature: float,
            report_progress: bool = False) -> Report:
    """Answer ``prompts`` again (:data:`N` replies each, the built-in chat model at
    ``chat_version``, in a child process), label best-vs-worst with ``score`` and write
    ``amplified.jsonl`` and ``amplification.json`` into ``run_dir``. Blocking: run it off
    the event loop (the tune's preparation does)."""
    import time
    from dataclasses import replace

    from rlhf_desktop.services.tuning.effect import replies_apart

    started = time.monotonic()
    door = gate(accuracy, reward_version)
    report = Report(used=False, reason=door.reason, accuracy=accuracy)
    if door.open and prompts:
        wanted = replace(params, n=N)
        got = replies_apart(chat_version, prompts, wanted, 0, len(prompts), report_progress,
                            seed=SEED)
        lines, unsure, not_whole = label_all(prompts, got, score, temperature)
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        (run_dir / FILE).write_text(text, encoding="utf-8")
        report = Report(used=bool(lines), reason=door.reason if lines else
                        "your reward model was not sure enough about any fresh pair",
                        accuracy=accuracy, prompts=len(prompts),
                        replies=sum(len(r) for r in got), pairs=len(lines), unsure=unsure,
                        not_whole=not_whole)
    report.seconds = round(time.monotonic() - started, 1)
    (run_dir / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=1) + "\n",
                                       encoding="utf-8")
    return report


def load_report(run_dir: Path) -> Report | None:
    """The run's amplification report, if it made one (a damaged file reads as none)."""
    try:
        data = json.loads((run_dir / REPORT_FILE).read_text(encoding="utf-8"))
        known = set(Report.__dataclass_fields__)
        return Report(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None
