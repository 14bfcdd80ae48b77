"""Does picking make the chat model better at what the user likes? The on-policy loop with
scripted users (tastes: benchmarks/loop_tastes.py, or any ``--taste FILE.py:FUNC``).

Protocol (prompts only, from the user turns of ``../shared/data/*.jsonl``, never copied here):

1. Split by prompt (seeded): the first ``--picks`` of the shuffled prompts are the user's
   training prompts, the last ``--held-out`` are never trained on.
2. Each training prompt is sent through the app itself: an :class:`AppSession` on a real
   SQLite data folder, the built-in model through :class:`LocalProvider`, N=4 replies with
   the chat's sampling settings. The replies are generated once (``gen-*`` folder) and that
   database is copied for every taste.
3. The scripted user scores the 4 replies (guarded: empty, cut at max_tokens or off-topic
   replies never win) and picks the best through ``AppSession.pick``: the app makes the pairs.
4. The app's own ranker is retrained on those picks (``ModelService.train_now``), the pairs
   are exported as the app does (``trl-conversational``), and the chat model is tuned by the
   app's entry point ``python -m rlhf_desktop.tune --config FILE`` per recipe.
5. Arms on the same held-out prompts and seeds, one reply each: ``base`` (candidate 0 of 4
   base replies), ``system`` (the taste's sentence added to the system prompt), ``rm_best_of_4``
   (the ranker's top card among the 4 base replies, in the chat's rank order: finished
   replies by score, then cut ones), ``finished_first`` (that order without a ranker: the
   first reply that finished; what the rule alone gives), ``taste_best_of_4`` (the
   scripted user's own best of the 4: the ceiling of any ranker), ``tuned_<recipe>`` per
   recipe, and
   ``noise`` (candidate 1: base with another seed). The scripted user judges each arm against
   ``base`` blind (texts only; a tie counts half; 95 % bootstrap CI over prompts), with guard
   metrics beside every arm (mean words, share cut, distinct-2, on-topic share, score of the
   frozen HH reward model) and its CPU time.

    .venv/bin/python -m benchmarks.loop --taste concise --picks 100 --held-out 60 --quick

Everything is kept in ``--work`` (default ``benchmarks/results/.cache/loop``, git-ignored) and
reused by a rerun. Writes ``benchmarks/results/loop.json`` (``--out``) and the ``loop``
section of docs/benchmarks.md (unless ``--no-docs``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import loop_tastes
from benchmarks._report import ROOT, update_section, write_json
from benchmarks._winrate import BOOTSTRAP, win_rate
from benchmarks.loop_tastes import Guards, Taste, guarded_scores

DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "benchmarks" / "results" / ".cache" / "loop"
COMMAND = ".venv/bin/python -m benchmarks.loop"
N = 4
HELD_SEED_OFFSET = 1_000_000
AMP_SEED_OFFSET = 2_000_000
"""Seeds of the amplification pool: fresh replies to the training prompts (arm 6)."""
SEED_STRIDE = 10
RETRIES = 3
"""Attempts per request when the built-in model fails (a fresh provider each time)."""
RECIPES: dict[str, dict[str, Any]] = {
    "defaults": {"lora_targets": ["q_proj", "v_proj"], "learning_rate": 5e-4,
                 "lr_scheduler": "constant", "warmup_ratio": 0.0, "epochs": 1.0,
                 "pair_budget": 0},
    "new": {"lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                             "down_proj"],
            "learning_rate": 2e-4, "lr_scheduler": "cosine", "warmup_ratio": 0.1,
            "epochs": 2.0, "pair_budget": 240, "beta": 0.1, "loss_type": ["sigmoid"],
            "precompute_ref_log_probs": False, "max_length": 256},
}
"""Tuning recipes (``TuneConfig`` keys). ``defaults``: the app's defaults before this
benchmark (arm 4); ``new``: the app's defaults since (arm 5). ``new`` was fixed before any
run of this benchmark, from the literature and one probe on a taste that is not shipped
(../shared/notes/loop-research.md: LoRA on all 7 projections at lr 2e-4 took 55 % to 77 %),
never from the shipped tastes' results. Its ``pair_budget`` comes from the time budget, not
from a result: a DPO pair costs about 6.5 s on one core of this 2-core machine (the probe: 52 s
a step of 8 pairs), so 30 minutes hold about 270 pairs; 240 is 30 steps of 8."""


# ---------------------------------------------------------------- prompts


def load_prompts(data: Path, max_chars: int) -> list[str]:
    """The first user turn of every conversation in ``data/*.jsonl``, deduplicated, between
    10 and ``max_chars`` characters, sorted (shuffle with the seed afterwards)."""
    from rlhf_desktop.core.formats import parse_transcript

    found: set[str] = set()
    files = sorted(data.glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no *.jsonl in {data} (give --data)")
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            prompt = json.loads(line).get("prompt")
            if isinstance(prompt, str):  # plain text, or a Human:/Assistant: transcript
                turns = [(m.role, m.content) for m in parse_transcript(prompt)]
            else:  # a list of {"role", "content"} messages
                turns = [(str(m.get("role")), str(m.get("content"))) for m in prompt or []]
            user = next((text.strip() for role, text in turns if role == "user"), "")
            if 10 <= len(user) <= max_chars:
                found.add(user)
    return sorted(found)


def split(prompts: list[str], picks: int, held_out: int, seed: int) -> tuple[list[str],
                                                                             list[str]]:
    """(training, held-out): the first ``picks`` and the last ``held_out`` of a seeded shuffle
    (so the held-out set does not move when ``--picks`` grows, and the reverse)."""
    order = list(prompts)
    random.Random(seed).shuffle(order)
    if picks + held_out > len(order):
        raise SystemExit(f"{picks} + {held_out} prompts asked, only {len(order)} distinct")
    return order[:picks], order[len(order) - held_out:]


# ---------------------------------------------------------------- the app


@contextlib.contextmanager
def data_folder(path: Path) -> Iterator[Path]:
    """Point the app at ``path`` (``RLHF_DESKTOP_HOME``) for the duration."""
    from rlhf_desktop.config.paths import HOME_ENV

    before = os.environ.get(HOME_ENV)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[HOME_ENV] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = before


def settings(args: argparse.Namespace, system_prompt: str | None = None) -> Any:
    """The chat's settings (defaults), with the benchmark's max_tokens; no retraining
    during the picks (the benchmark asks for one run afterwards)."""
    from rlhf_desktop.config import Settings

    s = Settings(max_tokens=args.max_tokens, retrain_every=10_000, provider="local")
    if system_prompt is not None:
        s.system_prompt = system_prompt
    return s


def sampling(args: argparse.Namespace, n: int, seed: int, system_prompt: str) -> Any:
    """The chat's sampling settings for one request."""
    from rlhf_desktop.domain import SamplingParams

    s = settings(args)
    return SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p,
                          max_tokens=s.max_tokens, system_prompt=system_prompt, seed=seed)


def provider(args: argparse.Namespace, lora: str | None = None) -> Any:
    """The app's built-in provider on the shipped GGUF (plus a tuned adapter)."""
    from rlhf_desktop import config
    from rlhf_desktop.providers.local import LocalProvider

    return LocalProvider(config.default_gguf_path(), n_threads=args.threads, lora_path=lora)


async def _generate_training(args: argparse.Namespace, folder: Path, prompts: list[str],
                             index: dict[str, Any], index_file: Path) -> None:
    from rlhf_desktop.domain import Message
    from rlhf_desktop.services.session import AppSession

    todo = [p for p in prompts if p not in index["turns"]]
    if not todo:
        return
    with data_folder(folder):
        s = settings(args)
        session = AppSession(s, provider=provider(args))
        await session.start()
        chat = await session.wait_provider()
        assert chat is not None
        try:
            for prompt in todo:
                i = prompts.index(prompt)
                cpu = time.process_time()
                conv = session.conversations.create(prompt[:60])
                turn = await chat.send_messages(
                    conv.id, [Message("user", prompt)],
                    params=sampling(args, N, args.seed + SEED_STRIDE * i, s.system_prompt))
                index["turns"][prompt] = turn.id
                index["cpu_s"] += time.process_time() - cpu
                index_file.write_text(json.dumps(index), encoding="utf-8")
                if len(index["turns"]) % 5 == 0:
                    print(f"  generated {len(index['turns'])}/{len(prompts)} training turns",
                          flush=True)
        finally:
            await session.aclose()


async def generate_training(args: argparse.Namespace, folder: Path,
                            prompts: list[str]) -> dict[str, Any]:
    """N replies per training prompt through the app (a turn each, in ``folder``); resumes
    (and starts the session again when the built-in model fails). Returns the index
    (prompt → turn id) and the CPU seconds spent."""
    from rlhf_desktop.providers import ProviderError
    from rlhf_desktop.services.chat.service import TurnFailed

    index_file = folder / "turns.json"
    index: dict[str, Any] = (json.loads(index_file.read_text(encoding="utf-8"))
                             if index_file.exists() else {"turns": {}, "cpu_s": 0.0})
    for attempt in range(RETRIES):
        try:
            await _generate_training(args, folder, prompts, index, index_file)
            break
        except (TurnFailed, ProviderError):
            if attempt == RETRIES - 1:
                raise
            print("  the built-in model failed; starting the session again", flush=True)
    index_file.write_text(json.dumps(index), encoding="utf-8")
    return index


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of one data folder's database into another (SQLite backup)."""
    from rlhf_desktop.config.paths import DB_FILENAME

    dst.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(src / DB_FILENAME)) as a, \
            contextlib.closing(sqlite3.connect(dst / DB_FILENAME)) as b:
        a.backup(b)


async def pick_and_train(args: argparse.Namespace, gen: Path, folder: Path,
                         turns: dict[str, int], prompts: list[str], taste: Taste,
                         guards: Guards) -> dict[str, Any]:
    """The scripted user picks on the copied turns; the app makes the pairs, retrains its
    ranker and exports the pairs (``pairs.jsonl``). Kept in ``picks.json``."""
    record_file = folder / "picks.json"
    if record_file.exists():
        return dict(json.loads(record_file.read_text(encoding="utf-8")))
    from rlhf_desktop.services.session import AppSession

    if folder.exists():
        shutil.rmtree(folder)
    copy_db(gen, folder)
    with data_folder(folder):
        session = AppSession(settings(args), provider=provider(args))
        await session.start()
        chat = await session.wait_provider()
        assert chat is not None
        labels = pairs = skipped = 0
        cpu = time.process_time()
        try:
            for prompt in prompts:
                turn = chat.repo.conversations.get_turn(turns[prompt])
                texts = [c.text for c in turn.candidates]
                sim = guards.similarity([prompt] * len(texts), texts)
                bad = guards.degenerate(texts, [c.finish_reason for c in turn.candidates], sim)
                scores = guarded_scores(taste, prompt, texts, bad)
                if all(bad):  # nothing worth picking: the user labels nothing
                    skipped += 1
                    continue
                best = int(np.argmax(scores))
                cand = turn.candidates[best]
                assert cand.id is not None
                pick = session.pick(turn, cand.id)
                labels += 1
                pairs += pick.pairs
            pick_cpu = time.process_time() - cpu
            cpu = time.process_time()
            started = time.perf_counter()
            session.models.train_now()
            await asyncio.sleep(0.1)
            await session.wait_training()
            rm_wall = time.perf_counter() - started
            rm_cpu = time.process_time() - cpu
            version = session.models.current()
            metrics = dict(version.metrics) if version is not None else {}
            exported = await asyncio.get_running_loop().run_in_executor(
                None, session.datasets.export, "trl-conversational", str(folder / "pairs.jsonl"))
        finally:
            await session.aclose()
    record = {"labels": labels, "skipped_all_degenerate": skipped, "pairs": pairs,
              "exported_pairs": exported, "pick_cpu_s": round(pick_cpu, 1),
              "ranker": {"version": None if version is None else version.version,
                         "cv_accuracy": metrics.get("cv_accuracy"),
                         "train_wall_s": round(rm_wall, 1), "train_cpu_s": round(rm_cpu, 1)}}
    record_file.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def run_tune(args: argparse.Namespace, folder: Path, name: str,
             recipe: dict[str, Any], data: Path | None = None) -> dict[str, Any]:
    """One ``python -m rlhf_desktop.tune`` run on the exported pairs (or ``data``; a
    chat-model version in ``folder``); its record is kept in ``tune-NAME.json``."""
    from benchmarks.tune_winrate import run_tune_process, train_history

    record_file = folder / f"tune-{name}.json"
    if record_file.exists():
        return dict(json.loads(record_file.read_text(encoding="utf-8")))
    run = folder / f"tune-{name}"
    cfg = {"data": str(data or folder / "pairs.jsonl"), "output_dir": str(run),
           "system_prompt": settings(args).system_prompt, **recipe}
    if args.max_steps:
        cfg["max_steps"] = args.max_steps
    if args.tune_threads:  # speed only: the same pairs and loss (recorded under "run")
        cfg["threads"] = args.tune_threads
    cfg_file = folder / f"tune-{name}.config.json"
    cfg_file.write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    command = [sys.executable, "-m", "rlhf_desktop.tune", "--config", str(cfg_file),
               "--nice", str(args.nice), "--data-dir", str(folder)]
    started = time.perf_counter()
    events, done, usage = run_tune_process(command, f"the tune {name}")
    steps = train_history(run)
    report: dict[str, Any] = next((e for e in events if e["event"] == "data"), {})
    start: dict[str, Any] = next((e for e in events if e["event"] == "start"), {})
    full = start.get("config") or {}
    record = {"recipe": recipe, "config": cfg, "steps": len(steps),
              # what the app's defaults added to the recipe (they changed between tunes)
              "run": {"torch_threads": start.get("torch_threads"),
                      **{k: full.get(k) for k in ("batch_size", "grad_accum")}},
              "pairs_used": report.get("used"),
              "wall_s": round(time.perf_counter() - started, 1),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "peak_rss_mib": round(usage.ru_maxrss / 1024),
              "loss_first": steps[0]["loss"] if steps else None,
              "loss_last": steps[-1]["loss"] if steps else None,
              "adapter_gguf": done["adapter_gguf"], "version": done["version"]}
    record_file.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


async def generate_held(args: argparse.Namespace, file: Path, prompts: list[str], n: int,
                        system_prompt: str, lora: str | None = None,
                        seed_offset: int = HELD_SEED_OFFSET) -> dict[str, Any]:
    """``n`` replies per held-out prompt (seed base: held-out offset + stride × index, the
    same for every arm), through the app's provider; kept in ``file`` (saved every 5 prompts,
    resumed, and a longer file serves a shorter list: ``--held-limit``)."""
    from rlhf_desktop.domain import Message
    from rlhf_desktop.providers import ProviderError

    done: dict[str, Any] = (json.loads(file.read_text(encoding="utf-8")) if file.exists()
                            else {"replies": [], "cpu_s": 0.0, "wall_s": 0.0})
    replies: list[list[dict[str, Any]]] = done["replies"]
    if len(replies) < len(prompts):
        llm = provider(args, lora)
        cpu, started = time.process_time(), time.perf_counter()
        cpu0, wall0 = done["cpu_s"], done["wall_s"]
        try:
            for i in range(len(replies), len(prompts)):
                seed = args.seed + seed_offset + SEED_STRIDE * i
                for attempt in range(RETRIES):
                    try:
                        cands = await llm.generate([Message("user", prompts[i])],
                                                   sampling(args, n, seed, system_prompt))
                        break
                    except ProviderError:
                        if attempt == RETRIES - 1:
                            raise
                        print("  the built-in model failed; starting it again", flush=True)
                        await llm.aclose()
                        llm = provider(args, lora)
                replies.append([{"text": c.text, "finish": c.finish_reason} for c in cands])
                done.update(cpu_s=round(cpu0 + time.process_time() - cpu, 1),
                            wall_s=round(wall0 + time.perf_counter() - started, 1))
                if i % 5 == 4 or i == len(prompts) - 1:
                    file.write_text(json.dumps(done), encoding="utf-8")
                    print(f"  {file.stem}: {len(replies)}/{len(prompts)}", flush=True)
        finally:
            await llm.aclose()
    share = len(prompts) / len(replies)
    return {"replies": replies[:len(prompts)], "cpu_s": round(done["cpu_s"] * share, 1),
            "wall_s": round(done["wall_s"] * share, 1)}


# ---------------------------------------------------------------- judging


def distinct_2(texts: list[str]) -> float:
    """Distinct bigrams over all bigrams of the arm's replies."""
    grams = [(a, b) for t in texts for a, b in zip(t.split(), t.split()[1:], strict=False)]
    return round(len(set(grams)) / len(grams), 3) if grams else 0.0


def guard_metrics(prompts: list[str], replies: list[dict[str, Any]], guards: Guards,
                  gold: Any) -> dict[str, Any]:
    """Mean words, share cut, distinct-2, on-topic share, mean frozen-HH-RM score."""
    texts = [r["text"] for r in replies]
    sim = guards.similarity(prompts, texts)
    hh = ([float(gold.score(p, [t])[0]) for p, t in zip(prompts, texts, strict=True)]
          if gold is not None else None)
    return {"mean_words": round(statistics.mean(len(t.split()) for t in texts), 1),
            "cut_share": round(100 * sum(r["finish"] == "length" for r in replies)
                               / len(replies), 1),
            "distinct_2": distinct_2(texts),
            "on_topic_share": round(100 * float(np.mean(sim >= guards.floor)), 1),
            "hh_rm_score": None if hh is None else round(statistics.mean(hh), 3)}


def judge(prompts: list[str], arm: list[dict[str, Any]], base: list[dict[str, Any]],
          taste: Taste, guards: Guards, seed: int) -> dict[str, Any]:
    """The scripted user's blind verdict, arm against base, per prompt (guarded)."""
    a_scores, b_scores, whole = [], [], []
    for p, ra, rb in zip(prompts, arm, base, strict=True):
        texts, fins = [ra["text"], rb["text"]], [ra["finish"], rb["finish"]]
        bad = guards.degenerate(texts, fins, guards.similarity([p, p], texts))
        sa, sb = guarded_scores(taste, p, texts, bad)
        a_scores.append(sa)
        b_scores.append(sb)
        whole.append("length" not in fins)
    out = win_rate(a_scores, b_scores, seed)
    # Every guard makes a cut reply lose to a whole one, so part of any gain can be "finishes
    # within max_tokens". The same verdict on the prompts where neither reply is cut says what
    # is left (a subset chosen by both replies' outcome: indicative, not a controlled figure).
    keep = [i for i, w in enumerate(whole) if w]
    out["neither_cut"] = (win_rate([a_scores[i] for i in keep], [b_scores[i] for i in keep],
                                   seed) if keep else None)
    return out


# ---------------------------------------------------------------- tastes


def gold_model(args: argparse.Namespace, embedder: Any) -> Any:
    """The frozen HH reward model: the app's TinyRewardModel trained once on all of
    hh-harmless-dev (saved in the work folder, loaded on a rerun); None with --no-gold.
    Sets ``args.gold_sigma`` when it is 0 (auto): the noise that flips a pair with the median
    margin on HH 25 % of the time (AlpacaFarm's simulated annotators flip about 25 %)."""
    if args.no_gold:
        return None
    from rlhf_desktop.core.formats import parse_record
    from rlhf_desktop.reward.model import TinyRewardModel
    from rlhf_desktop.reward.training import train

    folder = Path(args.work) / "gold-home"
    lines = (Path(args.data) / "hh-harmless-dev.jsonl").read_text(encoding="utf-8").splitlines()
    pairs = [parse_record(json.loads(ln)) for ln in lines if ln.strip()]
    with data_folder(folder):
        saved = folder / "gold"
        if (saved / "reward_model.joblib").exists():
            model = TinyRewardModel.load(saved, embedder=embedder)
        else:
            print(f"training the frozen HH reward model on {len(pairs)} pairs", flush=True)
            model = train(pairs, embedder=embedder).model
            model.save(saved)
    if args.gold_sigma <= 0:
        scored = [model.score(p.prompt_text, [p.chosen, p.rejected]) for p in pairs[:300]]
        margins = np.array([a - b for a, b in scored])
        args.gold_sigma = round(loop_tastes.sigma_for_flips(margins, 0.25), 4)
    return model


def resolve_taste(spec: str, gold: Any, args: argparse.Namespace) -> tuple[str, Taste]:
    """A shipped name, ``hh_gold``, or ``FILE.py:FUNC``."""
    if spec in loop_tastes.SHIPPED:
        return spec, loop_tastes.SHIPPED[spec]
    if spec == "hh_gold":
        if gold is None:
            raise SystemExit("hh_gold needs the gold reward model (drop --no-gold)")
        return spec, loop_tastes.gold_taste(gold, args.gold_sigma)
    try:
        return loop_tastes.load_external(spec)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


# ---------------------------------------------------------------- the run


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage for every taste and pick budget."""
    from rlhf_desktop.reward.embedder import Embedder
    from rlhf_desktop.storage.embcache import SqliteEmbeddingCache

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(cache=SqliteEmbeddingCache(work / "embeddings.sqlite3"))
    guards = Guards(embed=lambda texts: embedder.embed(texts), floor=args.on_topic_floor)
    prompts = load_prompts(Path(args.data), args.max_prompt_chars)
    top = max(args.picks)
    train_prompts, held = split(prompts, top, args.held_out, args.seed)
    if args.held_limit:
        held = held[:args.held_limit]
    print(f"{len(prompts)} distinct prompts: {top} for picks, {len(held)} held out", flush=True)

    tag = f"s{args.seed}-t{args.max_tokens}"
    gen = work / f"gen-{tag}"
    held_dir = work / f"held-{tag}-h{args.held_out}"
    held_dir.mkdir(parents=True, exist_ok=True)
    system = settings(args).system_prompt
    if args.stage == "gold":
        gold_model(args, embedder)
        return {"stage": "gold", "gold_sigma": args.gold_sigma}
    if args.stage == "held":
        pool = await generate_held(args, held_dir / "base-pool.json", held, N, system)
        return {"stage": "held", **{k: pool[k] for k in ("cpu_s", "wall_s")}}
    if args.stage == "amp":
        amp = await generate_held(args, gen / "amp-pool.json", train_prompts, N, system,
                                  seed_offset=AMP_SEED_OFFSET)
        return {"stage": "amp", **{k: amp[k] for k in ("cpu_s", "wall_s")}}
    if args.stage == "system":
        for spec in args.taste:  # only the taste's sentence is needed (no gold model)
            name, taste = ((spec, loop_tastes.gold_taste(None, 0.0)) if spec == "hh_gold"
                           else resolve_taste(spec, None, args))
            safe = name.replace(":", "-").replace("/", "-")
            await generate_held(args, held_dir / f"system-{safe}.json", held, 1,
                                f"{system} {loop_tastes.describe(taste)}".strip())
        return {"stage": "system"}
    if args.stage == "tuned":  # the tuned arms' held-out replies, from finished tunes only
        for spec in args.taste:
            safe = spec.replace(":", "-").replace("/", "-") if spec == "hh_gold" else \
                resolve_taste(spec, None, args)[0].replace(":", "-").replace("/", "-")
            for picks in sorted(args.picks):
                folder = work_folder(args, safe, picks)
                for recipe in [*args.recipes, "new_amplified"]:
                    record = folder / f"tune-{recipe}.json"
                    if record.exists():
                        tune = json.loads(record.read_text(encoding="utf-8"))
                        await generate_held(
                            args, held_dir / f"tuned-{safe}-p{picks}-{recipe}.json", held, 1,
                            system, tune["adapter_gguf"])
        return {"stage": "tuned"}
    index = await generate_training(args, gen, train_prompts)
    if args.stage == "train":
        return await tune_only(args, gen, index["turns"], train_prompts, guards)
    pool = await generate_held(args, held_dir / "base-pool.json", held, N, system)
    base = [r[0] for r in pool["replies"]]
    noise = [r[1] for r in pool["replies"]]
    gold = gold_model(args, embedder)

    out: dict[str, Any] = {"prompts": {"distinct": len(prompts), "held_out": len(held)},
                           "training_generation_cpu_s": round(index["cpu_s"], 1),
                           "base_pool": {k: pool[k] for k in ("cpu_s", "wall_s")},
                           "tastes": {}}
    base_guards = guard_metrics(held, base, guards, gold)
    for spec in args.taste:
        name, taste = resolve_taste(spec, gold, args)
        safe = name.replace(":", "-").replace("/", "-")
        t_out: dict[str, Any] = {"description": loop_tastes.describe(taste), "picks": {}}
        arms: dict[str, dict[str, Any]] = {}
        sys_prompt = f"{system} {loop_tastes.describe(taste)}".strip()
        if "system" in args.arms and (not args.system_tastes or spec in args.system_tastes):
            g = await generate_held(args, held_dir / f"system-{safe}.json", held, 1, sys_prompt)
            arms["system"] = {"replies": [r[0] for r in g["replies"]], "cpu_s": g["cpu_s"]}
        arms["noise"] = {"replies": noise, "cpu_s": None}
        if "rm" in args.arms:  # the rank rule alone, no ranker: what rm_best_of_4 adds to it
            arms["finished_first"] = {"replies": finished_first(pool["replies"]), "cpu_s": 0.0}
            # and the ceiling of any best-of-4: the scripted user's own choice among the four
            arms["taste_best_of_4"] = {
                "replies": taste_best(held, pool["replies"], taste, guards), "cpu_s": None}
        for picks in sorted(args.picks):
            folder = work_folder(args, safe, picks)
            rec = await pick_and_train(args, gen, folder, index["turns"],
                                       train_prompts[:picks], taste, guards)
            p_arms = dict(arms)
            if "rm" in args.arms:
                p_arms["rm_best_of_4"] = rm_arm(folder, held, pool["replies"])
            for recipe in args.recipes:
                if (f"tuned_{recipe}" not in args.arms and "tuned" not in args.arms) or \
                        not recipe_chosen(args, recipe, spec, picks):
                    continue
                tune = run_tune(args, folder, recipe, RECIPES[recipe])
                rec.setdefault("tunes", {})[recipe] = tune
                g = await generate_held(args, held_dir / f"tuned-{safe}-p{picks}-{recipe}.json",
                                        held, 1, system, tune["adapter_gguf"])
                p_arms[f"tuned_{recipe}"] = {"replies": [r[0] for r in g["replies"]],
                                             "cpu_s": round(g["cpu_s"] + tune["cpu_s"], 1)}
            if "amplified" in args.arms and chosen(args.amp_tastes or args.tune_tastes, spec,
                                                   picks):
                amp_pool = await generate_held(args, gen / "amp-pool.json", train_prompts[:picks],
                                               N, system, seed_offset=AMP_SEED_OFFSET)
                amp = amplified_data(folder, train_prompts[:picks], amp_pool["replies"], system)
                rec["amplification"] = amp["report"]
                if amp["report"]["used"]:
                    tune = run_tune(args, folder, "new_amplified", RECIPES["new"], amp["data"])
                    rec.setdefault("tunes", {})["new_amplified"] = tune
                    g = await generate_held(
                        args, held_dir / f"tuned-{safe}-p{picks}-new_amplified.json", held, 1,
                        system, tune["adapter_gguf"])
                    p_arms["tuned_new_amplified"] = {
                        "replies": [r[0] for r in g["replies"]],
                        "cpu_s": round(g["cpu_s"] + tune["cpu_s"] + amp_pool["cpu_s"], 1)}
            rec["arms"] = {"base": {"guards": base_guards, "cpu_s": None}}
            for arm, a in p_arms.items():
                rec["arms"][arm] = {
                    "vs_base": judge(held, a["replies"], base, taste, guards, args.seed),
                    "guards": guard_metrics(held, a["replies"], guards, gold),
                    "cpu_s": a["cpu_s"]}
            if "tuned_new_amplified" in p_arms and "tuned_new" in p_arms:
                # Arm 6 is kept only if it beats arm 5: judged head to head, same prompts.
                rec["arms"]["tuned_new_amplified"]["vs_tuned_new"] = judge(
                    held, p_arms["tuned_new_amplified"]["replies"],
                    p_arms["tuned_new"]["replies"], taste, guards, args.seed)
            if "tuned_new" in p_arms and "tuned_defaults" in p_arms:
                # Is the new recipe better than the old defaults? Head to head, same prompts.
                rec["arms"]["tuned_new"]["vs_tuned_defaults"] = judge(
                    held, p_arms["tuned_new"]["replies"], p_arms["tuned_defaults"]["replies"],
                    taste, guards, args.seed)
            t_out["picks"][str(picks)] = rec
            print(f"{name} @ {picks} picks: " + ", ".join(
                f"{k} {v['vs_base']['win_rate']} %" for k, v in rec["arms"].items()
                if "vs_base" in v), flush=True)
        out["tastes"][name] = t_out
    return out


async def tune_only(args: argparse.Namespace, gen: Path, turns: dict[str, int],
                    train_prompts: list[str], guards: Guards) -> dict[str, Any]:
    """Picks and tunes only (run beside the held-out generation; a later full run reuses
    them). No gold model: ``hh_gold`` is left out here."""
    out: dict[str, Any] = {"stage": "train", "tastes": {}}
    for spec in args.taste:
        if spec == "hh_gold":
            continue
        name, taste = resolve_taste(spec, None, args)
        safe = name.replace(":", "-").replace("/", "-")
        for picks in sorted(args.picks):
            folder = work_folder(args, safe, picks)
            rec = await pick_and_train(args, gen, folder, turns, train_prompts[:picks], taste,
                                       guards)
            for recipe in args.recipes:
                if recipe_chosen(args, recipe, spec, picks):
                    rec.setdefault("tunes", {})[recipe] = run_tune(args, folder, recipe,
                                                                   RECIPES[recipe])
            out["tastes"].setdefault(name, {})[str(picks)] = rec
    return out


def amplified_data(folder: Path, prompts: list[str], pool: list[list[dict[str, Any]]],
                   system: str) -> dict[str, Any]:
    """Arm 6's data: the taste's exported pairs plus what the app's amplification makes of
    the pool (fresh replies to the same training prompts): the ranker trained on the picks
    labels best vs worst, through :func:`rlhf_desktop.services.tuning.amplify.label_all` behind its
    accuracy gate. Written to ``pairs-amplified.jsonl``; the report says what was used."""
    from rlhf_desktop.domain import Message
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.services.tuning import amplify
    from rlhf_desktop.storage.repo import Repository

    with data_folder(folder):
        rewards = RewardService()
        repo = Repository.open()
        try:
            rewards.load_current(repo)
            versions = {v.version: v for v in repo.versions.list_all()}
        finally:
            repo.close()
        version = rewards.model.version if rewards.model.trained else None
        record = versions.get(version) if version is not None else None
        door = amplify.gate(record.cv_accuracy if record else None, version)
        report: dict[str, Any] = {"used": False, "reason": door.reason,
                                  "accuracy": door.accuracy, "pairs": 0}
        out = folder / "pairs-amplified.jsonl"
        if door.open:
            messages = [(Message("system", system), Message("user", p)) for p in prompts]
            replies = [[(r["text"], r["finish"]) for r in got] for got in pool]
            lines, unsure, not_whole = amplify.label_all(
                messages, replies, lambda p, texts: rewards.rank(p, texts).scores,
                rewards.model.temperature)
            own = (folder / "pairs.jsonl").read_text(encoding="utf-8")
            out.write_text(own + "".join(json.dumps(line, ensure_ascii=False) + "\n"
                                         for line in lines), encoding="utf-8")
            report.update(used=bool(lines), pairs=len(lines), unsure=unsure,
                          not_whole=not_whole)
    return {"report": report, "data": out}


def recipe_chosen(args: argparse.Namespace, recipe: str, taste: str, picks: int) -> bool:
    """Whether ``recipe`` is tuned for ``taste`` at ``picks``: ``--tune-tastes`` selects the
    tunes, and ``--defaults-tastes`` (when given) narrows arm 4 (``defaults``) further."""
    if not chosen(args.tune_tastes, taste, picks):
        return False
    return recipe != "defaults" or chosen(args.defaults_tastes, taste, picks)


def chosen(specs: list[str], taste: str, picks: int) -> bool:
    """Whether ``--tune-tastes``/``--amp-tastes`` select ``taste`` at ``picks``: an empty
    list selects every taste, ``NAME`` every budget of it, ``NAME@PICKS`` that budget only."""
    return not specs or taste in specs or f"{taste}@{picks}" in specs


def work_folder(args: argparse.Namespace, safe: str, picks: int) -> Path:
    """One taste's data folder at one pick budget."""
    return Path(args.work) / f"taste-{safe}-p{picks}-s{args.seed}-t{args.max_tokens}"


def finished_first(pool: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per held-out prompt, the first of its 4 base replies in the chat's rank order with no
    ranker (``pick_rules.ranked`` of unscored cards): the first reply that finished, else
    the first cut one. The rule's share of ``rm_best_of_4``, without the ranker."""
    from rlhf_desktop.core.pick_rules import ranked
    from rlhf_desktop.domain import Candidate

    return [replies[ranked([Candidate(index=i, text=r["text"], finish_reason=r["finish"])
                            for i, r in enumerate(replies)])[0].index] for replies in pool]


def taste_best(prompts: list[str], pool: list[list[dict[str, Any]]], taste: Taste,
               guards: Guards) -> list[dict[str, Any]]:
    """Per held-out prompt, the reply of its 4 base replies the scripted user scores best
    (guarded; the first on a tie): what a perfect ranker would put on top."""
    chosen = []
    for prompt, replies in zip(prompts, pool, strict=True):
        texts = [r["text"] for r in replies]
        bad = guards.degenerate(texts, [r["finish"] for r in replies],
                                guards.similarity([prompt] * len(texts), texts))
        chosen.append(replies[int(np.argmax(guarded_scores(taste, prompt, texts, bad)))])
    return chosen


def rm_arm(folder: Path, prompts: list[str], pool: list[list[dict[str, Any]]]
           ) -> dict[str, Any]:
    """The app's ranker (trained on this taste's picks) puts a card on top among the 4 base
    replies of each held-out prompt, as the chat orders them (``pick_rules.ranked``: whole
    replies by score, cut replies after finished ones; the first card when it is
    untrained)."""
    from rlhf_desktop.core.pick_rules import ranked
    from rlhf_desktop.domain import Candidate
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.storage.repo import Repository

    with data_folder(folder):
        rewards = RewardService()
        repo = Repository.open()
        try:
            rewards.load_current(repo)
        finally:
            repo.close()
        cpu = time.process_time()
        chosen = []
        for prompt, replies in zip(prompts, pool, strict=True):
            cards = [Candidate(index=i, text=r["text"], finish_reason=r["finish"])
                     for i, r in enumerate(replies)]
            scores, version = rewards.rank_replies(prompt, cards)
            for card, score in zip(cards, scores, strict=True):
                card.score = score
            chosen.append(replies[ranked(cards)[0].index] if version is not None
                          else replies[0])
    return {"replies": chosen, "cpu_s": round(time.process_time() - cpu, 1)}


# ---------------------------------------------------------------- report


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def markdown(result: dict[str, Any]) -> str:
    """The docs section: one row per taste, pick budget and arm."""
    out = ["## The on-policy loop: scripted users pick, the model learns (benchmarks/loop.py)",
           "", f"`{result['command']}` (JSON: `benchmarks/results/{result['name']}.json`). "
           "Protocol in the module docstring: prompts from the user turns of "
           "`../shared/data`, split by prompt; 4 built-in replies per training prompt through "
           "the app (AppSession on a real SQLite folder); the scripted user picks the best "
           "(guarded: an empty, cut or off-topic reply never wins) and the app makes the "
           "pairs; each arm's reply on held-out prompts is judged blind against the base "
           "reply by the same scripted user (tie half; 95 % bootstrap CI over prompts). "
           "Guards: mean words, % cut at max_tokens, distinct-2, % on topic, mean score of "
           "the frozen HH reward model.", "",
           "| taste | prompts (picks, pairs) | arm | win vs base [95 % CI] | neither cut [95 % CI] "
           "| words | cut % | distinct-2 | on-topic % | HH-RM | CPU s |",
           "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def cell(w: dict[str, Any] | None, bold: bool = True) -> str:
        if w is None:
            return "–"
        rate = f"**{w['win_rate']}**" if bold else f"{w['win_rate']}"
        return f"{rate} [{w['ci95'][0]}, {w['ci95'][1]}] (n={w['n']})"

    head_to_head = []
    for name, t in result["tastes"].items():
        for picks, rec in t["picks"].items():
            for arm, a in rec["arms"].items():
                w, g = a.get("vs_base"), a["guards"]
                win, whole = cell(w), cell((w or {}).get("neither_cut"), bold=False)
                if "vs_tuned_defaults" in a:
                    head_to_head.append(f"- {name} @ {picks} picks: arm 5 (tuned_new) against "
                                        f"arm 4 (tuned_defaults), head to head: "
                                        f"{cell(a['vs_tuned_defaults'])}")
                if "vs_tuned_new" in a:
                    head_to_head.append(f"- {name} @ {picks} picks: arm 6 (amplified) against "
                                        f"arm 5 (tuned_new), head to head: "
                                        f"{cell(a['vs_tuned_new'])}")
                out.append(f"| {name} | {picks} ({rec['labels']}, {rec['pairs']}) | {arm} | "
                           f"{win} | {whole} | "
                           f"{g['mean_words']} | {g['cut_share']} | {g['distinct_2']} | "
                           f"{g['on_topic_share']} | {g['hh_rm_score']} | "
                           f"{'–' if a['cpu_s'] is None else a['cpu_s']} |")
    notes = [f"- {name} @ {picks} prompts ({rec['labels']} picks; "
             f"{rec['skipped_all_degenerate']} turns had no whole reply to pick): ranker CV "
             f"accuracy {_round(rec['ranker']['cv_accuracy'])}; "
             + "; ".join(f"tune {k}: {v['steps']} steps, {v['wall_s']} s wall, loss "
                         f"{_round(v['loss_first'])} → {_round(v['loss_last'])}"
                         for k, v in rec.get("tunes", {}).items())
             for name, t in result["tastes"].items() for picks, rec in t["picks"].items()]
    amp = [f"- {name} @ {picks} picks: amplification: {rec['amplification'].get('reason', '')}"
           for name, t in result["tastes"].items() for picks, rec in t["picks"].items()
           if rec.get("amplification")]
    return "\n".join([*out, "", *notes, *head_to_head, *amp])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--taste", nargs="+", default=["concise"],
                   help=f"shipped ({', '.join(loop_tastes.SHIPPED)}, hh_gold) or FILE.py:FUNC")
    p.add_argument("--picks", type=int, nargs="+", default=[100])
    p.add_argument("--held-out", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data", default=str(DATA), help="folder of *.jsonl (user turns only)")
    p.add_argument("--work", default=str(WORK))
    p.add_argument("--max-tokens", type=int, default=256, help="the chat's max_tokens")
    p.add_argument("--max-prompt-chars", type=int, default=400)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--arms", nargs="+", default=["system", "rm", "tuned"],
                   help="system, rm, tuned (every recipe), tuned_<recipe>, or amplified (the new "
                        "recipe on the picks plus the ranker's pairs: arm 6); base and noise "
                        "always")
    p.add_argument("--system-tastes", nargs="*", default=[],
                   help="the system-prompt arm for these of --taste only (default: every one)")
    p.add_argument("--tune-tastes", nargs="*", default=[],
                   help="tune for these of --taste only (default: every one); NAME@PICKS: "
                        "at that --picks budget only")
    p.add_argument("--amp-tastes", nargs="*", default=[],
                   help="arm 6 (amplified) for these only, NAME or NAME@PICKS (default: the "
                        "tuned ones)")
    p.add_argument("--defaults-tastes", nargs="*", default=[],
                   help="arm 4 (recipe defaults) for these only, NAME or NAME@PICKS (default: "
                        "the tuned ones)")
    p.add_argument("--max-steps", type=int, default=0, help="cap every tune (0: the recipe's)")
    p.add_argument("--tune-threads", type=int, default=0,
                   help="torch threads of every tune (0: the app's default, every core; 1 when "
                        "tunes or generations share the cores)")
    p.add_argument("--quick", action="store_true",
                   help="held-out arms: base, system, rm, tuned_new, noise; tunes capped at "
                        "8 steps")
    p.add_argument("--held-limit", type=int, default=0,
                   help="judge only the first K of the --held-out prompts (what was generated "
                        "in time)")
    p.add_argument("--stage", default="all",
                   choices=["all", "train", "held", "system", "gold", "amp", "tuned"],
                   help="train: the training replies, picks and tunes only; held: the "
                        "held-out base replies only; system: the system-prompt arm's replies "
                        "only; gold: the frozen HH reward model only; amp: the amplification "
                        "pool only (fresh replies to the training prompts, arm 6); tuned: the "
                        "held-out replies of the tunes already finished "
                        "(run them side by side; a later full run reuses what they kept)")
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--threads", type=int, default=1,
                   help="the built-in model's threads (the app's default is 1; 2 when this "
                        "benchmark has the machine to itself)")
    p.add_argument("--on-topic-floor", type=float, default=0.15)
    p.add_argument("--no-gold", action="store_true",
                   help="no frozen HH reward model (no hh_gold taste, no HH-RM guard)")
    p.add_argument("--gold-sigma", type=float, default=0.0,
                   help="hh_gold's per-text noise (AlpacaFarm-style annotator noise); 0: "
                        "flip 25 %% of pairs with the median HH margin")
    p.add_argument("--out", default="loop", help="results file name (benchmarks/results/OUT.json)")
    p.add_argument("--out-file", default="",
                   help="write the JSON here instead (tests; implies --no-docs)")
    p.add_argument("--no-docs", action="store_true")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    # absolute: the tune reads its config's paths relative to the config file's folder
    args.work = str(Path(args.work).resolve())
    if args.quick:
        args.recipes = ["new"]
        args.max_steps = args.max_steps or 8
    return args


def main(argv: list[str] | None = None) -> None:
    """Run, write the JSON and the docs section."""
    args = parse_args(argv)
    given = list(argv if argv is not None else sys.argv[1:])
    if "--note" in given:  # the note is printed below the table, not inside the command
        at = given.index("--note")
        given[at:at + 2] = ["--note", "NOTE"]
    command = " ".join([COMMAND, *given])
    started = time.perf_counter()
    result = asyncio.run(run(args))
    if args.stage != "all":
        print(json.dumps(result, indent=1))
        return
    result = {"command": command, "name": args.out, "seed": args.seed, "picks": args.picks,
              "held_out": args.held_out, "max_tokens": args.max_tokens, "n": N,
              "recipes": {k: RECIPES[k] for k in args.recipes}, "arms": args.arms,
              "quick": args.quick, "max_steps": args.max_steps,
              "on_topic_floor": args.on_topic_floor, "gold_sigma": args.gold_sigma,
              "bootstrap_resamples": BOOTSTRAP, "note": args.note,
              "wall_s": round(time.perf_counter() - started, 1), **result}
    if args.out_file:
        Path(args.out_file).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return
    write_json(args.out, result)
    if not args.no_docs:
        update_section(args.out, markdown(result) + (f"\n\n{args.note}" if args.note else ""))


if __name__ == "__main__":
    main()
