"""The measured effect of a tuned chat-model version on the user's own taste.

After a tune made version N: one reply from the base and one from vN for up to
:data:`PROMPTS` of the user's past prompts (newest first), each pair with the same fixed
seed, through the app's own built-in provider (llama.cpp, the adapter applied as the chat
applies it); both replies scored by the user's current ranker; the tuned version's win rate
over prompts (a tie counts half) with a 95 % percentile bootstrap interval over prompts; and
how far that judge can be trusted: the ranker's agreement with the user's blind picks, from
the scores stored when each blind turn was shown (scored before the pick, so never
in-sample). Stored as ``effect.json`` beside the version's manifest; the model page shows
:func:`effect_words`. The user's own check stays "Try vN blind against the base".

``python -m rlhf_desktop.services.tuning.effect --version N`` runs it (the tuning service
starts it at low priority after a run; ``--prompts`` caps the prompts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.domain import CandidateSource, Message, PreferencePair, SamplingParams

log = logging.getLogger(__name__)

PROMPTS = 40
"""Past prompts a measurement uses at most."""
SEED = 7000
"""Prompt i is answered with seed SEED + i by both the base and the tuned version."""
ROUNDS = 2000
"""Bootstrap resamples of the prompts."""
MIN_AGREEMENT_PAIRS = 5
"""Blind pairs with stored scores before the agreement is given as a figure."""
EFFECT_FILE = "effect.json"


@dataclass
class Effect:
    """One measurement (``effect.json``)."""

    version: int
    prompts: int
    wins: int
    losses: int
    ties: int
    rate: float | None
    low: float | None
    high: float | None
    ranker: str
    """The judge: ``reward model v3`` or ``transformers ranker``."""
    agreement: float | None
    """Share of the user's blind pairs whose chosen reply the ranker scored higher."""
    agreement_pairs: int
    agreement_basis: str
    """``blind`` (scores stored when blind turns were shown) or ``cv`` (the version's
    cross-validated accuracy, when there are too few blind picks)."""
    seconds: float = 0.0
    created_at: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Per prompt: the prompt's start, both replies' scores (for whoever wants to look)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Effect:
        """From ``effect.json`` (unknown keys ignored)."""
        known = set(Effect.__dataclass_fields__)
        return Effect(**{k: v for k, v in data.items() if k in known})


def past_prompts(pairs: Sequence[PreferencePair], limit: int = PROMPTS
                 ) -> list[tuple[Message, ...]]:
    """The prompts of the user's pairs, newest first, each once (by its text)."""
    seen: set[str] = set()
    out: list[tuple[Message, ...]] = []
    for pair in reversed(pairs):
        key = json.dumps([m.to_dict() for m in pair.prompt], ensure_ascii=False)
        if key in seen or not pair.prompt:
            continue
        seen.add(key)
        out.append(tuple(pair.prompt))
        if len(out) >= limit:
            break
    return out


def win_rate(tuned: Sequence[float], base: Sequence[float], rounds: int = ROUNDS,
             seed: int = 0) -> tuple[int, int, int, float | None, float | None, float | None]:
    """Wins, losses, ties of the tuned replies, the win rate (a tie counts half) and its
    95 % percentile bootstrap interval over prompts (None for fewer than 2 prompts)."""
    t, b = np.asarray(tuned, dtype=float), np.asarray(base, dtype=float)
    score = np.where(t > b, 1.0, np.where(t < b, 0.0, 0.5))
    wins, losses = int((score == 1.0).sum()), int((score == 0.0).sum())
    ties = len(score) - wins - losses
    if len(score) == 0:
        return wins, losses, ties, None, None, None
    rate = float(score.mean())
    if len(score) < 2:
        return wins, losses, ties, rate, None, None
    idx = np.random.default_rng(seed).integers(0, len(score), size=(rounds, len(score)))
    low, high = np.percentile(score[idx].mean(axis=1), [2.5, 97.5])
    return wins, losses, ties, rate, float(low), float(high)


def blind_agreement(pairs: Sequence[PreferencePair]) -> tuple[float | None, int]:
    """How often the reward model in use at the time scored the user's chosen reply above
    the rejected one, on blind turns (scores stored when shown, before the pick); a tie of
    scores counts half. Pairs need ``metadata`` (``repo.provenance.with_metadata``)."""
    hits, n = 0.0, 0
    for pair in pairs:
        meta = pair.metadata or {}
        chosen, rejected = meta.get("chosen_score"), meta.get("rejected_score")
        if not meta.get("blind") or not isinstance(chosen, int | float) \
                or not isinstance(rejected, int | float):
            continue
        n += 1
        hits += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
    return (hits / n if n else None), n


CHANCE = 0.5
"""A judge that agrees with the user's picks at most this often is no better than a coin (a
new user's 3-label reward model measured 11 % and the page read "tuned wins 14 %" as a verdict)."""


def _first_up(text: str) -> str:
    """``text`` to start a sentence."""
    return text[:1].upper() + text[1:]


def effect_words(effect: Effect) -> str:
    """E.g. "Chat model v2 (tuned) wins 68 % (58–77 %) against the base on 40 of your past prompts,
    judged by your ranker, which agrees with your blind picks 71 % of the time"."""
    n = effect.prompts
    if effect.rate is None:
        return f"{_first_up(version_name(effect.version))}: no past prompts to measure it on yet."
    interval = ("" if effect.low is None or effect.high is None
                else f" ({effect.low * 100:.0f}–{effect.high * 100:.0f} %)")
    head = (f"{_first_up(version_name(effect.version))} wins {effect.rate * 100:.0f} %{interval} "
            "against the "
            f"base on {n} of your past prompt{'s' if n != 1 else ''} ({effect.wins} won, "
            f"{effect.losses} lost, {effect.ties} tied), judged by your {effect.ranker}")
    if effect.agreement is None:
        judge = ", which has no blind picks of yours to check it against yet"
    elif effect.agreement_basis == "blind":
        judge = (f", which agrees with your blind picks {effect.agreement * 100:.0f} % of the "
                 f"time ({effect.agreement_pairs} pairs, scored before you picked)")
    else:
        judge = (f", which agrees with your picks {effect.agreement * 100:.0f} % of the time "
                 f"(cross-validated; too few blind picks to check it on those)")
    if effect.agreement is not None and effect.agreement <= CHANCE:
        # a judge no better than a coin says nothing about the tuned model: say so first
        # ("no better than a coin" beside 11 % read as "far worse than a coin")
        judge += (": no better than chance (a coin agrees 50 % of the time), so this figure "
                  "says nothing about the tuned model yet (the judge improves as you pick)")
    caveat = (". The judge is a model of your taste, not you, and these prompts were among "
              "those it was tuned on (the replies are new); 95 % interval over prompts. Your "
              f"own check: Try {version_name(effect.version)} blind against the base.")
    return head + judge + caveat


def effect_path(version_folder: Path) -> Path:
    """``effect.json`` of a chat-model version folder."""
    return version_folder / EFFECT_FILE


def load_effect(version_folder: Path) -> Effect | None:
    """The stored measurement of a version, if any (a damaged file reads as none)."""
    try:
        return Effect.from_dict(json.loads(effect_path(version_folder).read_text(
            encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


Reply = tuple[str, str | None]
"""A reply's text and its finish reason (``length``: cut at max tokens; None: failed)."""


async def _replies(version: int, prompts: Sequence[tuple[Message, ...]],
                   params: SamplingParams, on_reply: Callable[[], None],
                   seed: int = SEED) -> list[list[Reply]]:
    """``params.n`` replies per prompt from the built-in model at ``version`` (0: the base),
    prompt i with seeds ``seed`` + 10 i onwards, through the provider the chat and the arena
    use."""
    from rlhf_desktop import config
    from rlhf_desktop.providers import select
    from rlhf_desktop.providers.errors import ProviderError

    settings = config.load_settings()
    source = CandidateSource(name=f"v{version}", provider="local", count=params.n,
                             chat_model_version=version)
    choice = select.source_choice(source, settings)
    provider = select.build(choice, settings)
    out: list[list[Reply]] = []
    try:
        for i, prompt in enumerate(prompts):
            wanted = replace(params, seed=seed + (10 * i if params.n > 1 else i))
            try:
                got = await provider.generate(list(prompt), wanted)
            except ProviderError as exc:  # the engine went away: once more on a fresh one
                log.warning("reply %d of v%d failed (%s); retrying on a fresh engine", i,
                            version, exc)
                await provider.aclose()
                provider = select.build(choice, settings)
                got = await provider.generate(list(prompt), wanted)
            out.append([(c.text, None if c.error else c.finish_reason) for c in got])
            on_reply()
    finally:
        await provider.aclose()
    return out


def tick_many(n: int, tick: Callable[[], None]) -> None:
    """``tick`` ``n`` times (the count of replies a child made)."""
    for _ in range(n):
        tick()


def _replies_child(version: int, prompts: list[list[dict[str, str]]],
                   params: dict[str, Any], data_dir: str, offset: int, total: int,
                   report: bool, seed: int = SEED) -> list[list[Reply]]:
    """In a child process: :func:`_replies`, printing progress lines when ``report``."""
    from rlhf_desktop import config

    config.set_data_dir(data_dir)
    done = [offset]

    def tick() -> None:
        done[0] += 1
        if report:
            print(json.dumps({"event": "reply", "done": done[0], "total": total}), flush=True)

    messages = [tuple(Message(m["role"], m["content"]) for m in p) for p in prompts]
    return asyncio.run(_replies(version, messages, SamplingParams(**params), tick, seed))


def replies_apart(version: int, prompts: Sequence[tuple[Message, ...]],
                  params: SamplingParams, offset: int, total: int, report: bool,
                  seed: int = SEED) -> list[list[Reply]]:
    """:func:`_replies` in a process of its own (a fresh llama.cpp engine for each side:
    one process never holds the base and the tuned engine, and frees each at its end)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from rlhf_desktop import config

    data = [[m.to_dict() for m in p] for p in prompts]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_replies_child, version, data, params.to_dict(),
                           str(config.data_dir()), offset, total, report, seed).result()


def measure(version: int, limit: int = PROMPTS,
            on_progress: Callable[[int, int], None] | None = None) -> Effect:
    """Generate, judge and store the effect of chat-model ``version`` (blocking; run it in
    a low-priority process). Raises ValueError when there is nothing to measure."""
    from rlhf_desktop import config
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.storage.repo import Repository
    from rlhf_desktop.tune.versions import get_version

    started = time.monotonic()
    folder = get_version(version).folder
    repo = Repository.open()
    try:
        pairs = repo.provenance.with_metadata(repo.pairs.list_all())
        rewards = RewardService()
        rewards.load_current(repo)
        versions = {v.version: v for v in repo.versions.list_all()}
    finally:
        repo.close()
    prompts = past_prompts(pairs, limit)
    if not prompts:
        raise ValueError("there are no past prompts to measure the tuned version on")
    if not rewards.model.trained and not rewards.ranker.wanted:
        raise ValueError("there is no trained ranker to judge the replies yet: label a few "
                         "turns first")
    settings = config.load_settings()
    params = SamplingParams(n=1, temperature=settings.temperature, top_p=settings.top_p,
                            max_tokens=settings.max_tokens,
                            system_prompt=settings.system_prompt)
    done = [0]
    total = 2 * len(prompts)

    def tick() -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total)

    base = [r[0][0] for r in replies_apart(0, prompts, params, 0, total,
                                           on_progress is not None)]
    tick_many(len(prompts), tick)
    tuned = [r[0][0] for r in replies_apart(version, prompts, params, len(prompts), total,
                                            on_progress is not None)]
    tick_many(len(prompts), tick)
    base_scores, tuned_scores, rows = [], [], []
    judge_version: int | None = None
    for prompt, a, b in zip(prompts, base, tuned, strict=True):
        last_user = next((m.content for m in reversed(prompt) if m.role == "user"), "")
        ranked = rewards.rank(last_user, [a, b])
        judge_version = ranked.version
        base_scores.append(float(ranked.scores[0]))
        tuned_scores.append(float(ranked.scores[1]))
        rows.append({"prompt": " ".join(last_user.split())[:80], "base": ranked.scores[0],
                     "tuned": ranked.scores[1]})
    wins, losses, ties, rate, low, high = win_rate(tuned_scores, base_scores)
    agreement, n = blind_agreement(pairs)
    basis = "blind"
    if n < MIN_AGREEMENT_PAIRS:
        record = versions.get(judge_version) if isinstance(judge_version, int) else None
        agreement = record.cv_accuracy if record is not None else None
        basis = "cv"
    from rlhf_desktop.services.ranking.slot import TRANSFORMERS_RANKER_VERSION

    if judge_version is None:
        raise ValueError("the ranker did not score the replies")
    ranker = ("transformers ranker" if judge_version == TRANSFORMERS_RANKER_VERSION
              else f"reward model v{judge_version}")
    effect = Effect(version=version, prompts=len(prompts), wins=wins, losses=losses, ties=ties,
                    rate=rate, low=low, high=high, ranker=ranker, agreement=agreement,
                    agreement_pairs=n, agreement_basis=basis,
                    seconds=round(time.monotonic() - started, 1), created_at=time.time(),
                    rows=rows)
    tmp = effect_path(folder).with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(effect.to_dict(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(effect_path(folder))
    return effect


def main(argv: list[str] | None = None) -> int:
    """``python -m rlhf_desktop.services.tuning.effect --version N [--prompts K]
    [--data-dir D] [--nice 19]``: progress lines on stdout, the sentence at the end."""
    import argparse

    from rlhf_desktop import config

    parser = argparse.ArgumentParser(prog="python -m rlhf_desktop.services.tuning.effect")
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--prompts", type=int, default=PROMPTS)
    parser.add_argument("--data-dir")
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    if args.data_dir:
        config.set_data_dir(args.data_dir)

    def progress(done: int, total: int) -> None:
        """The children print each reply's line; nothing more to say here."""

    try:
        effect = measure(args.version, max(1, args.prompts), progress)
    except (ValueError, config.ConfigError) as exc:
        print(json.dumps({"event": "error", "message": str(exc)}), flush=True)
        return 2
    print(json.dumps({"event": "done", "words": effect_words(effect)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
