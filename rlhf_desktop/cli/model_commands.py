"""The reward-model commands: train, models, use, eval, score."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlhf_desktop.cli.common import CliError, plural
from rlhf_desktop.cli.common import emit as _emit


def cmd_train(args: argparse.Namespace) -> int:
    """Train a new version."""
    from rlhf_desktop import config
    from rlhf_desktop.reward.training import TrainConfig, TrainingError

    service = _current_model()  # the version in use: a new one must not be worse
    # the window's setting holds here too (the error below names it)
    cfg = TrainConfig(use_cut_pairs=config.load_settings().train_on_cut_pairs)

    def progress(fraction: float, stage: str) -> None:
        if args.verbose:
            print(f"\r{stage} {fraction * 100:5.1f} %", end="", file=sys.stderr, flush=True)

    try:
        record = service.train_now(cfg, progress=progress)
    except TrainingError as exc:
        raise CliError(str(exc)) from exc
    if args.verbose:
        print(file=sys.stderr)
    m = record.metrics
    acc = m.get("cv_accuracy")
    acc_text = "n/a (too few pairs)" if acc is None else f"{acc * 100:.1f} %"
    adoption = m.get("adoption") or {"adopted": True, "reason": ""}
    _emit(
        {"version": record.version, "path": record.path, **m,
         "adopted": adoption["adopted"], "in_use": service.version},
        args.json,
        [
            f"model v{record.version} · CV accuracy {acc_text} · {plural(m['pairs'], 'pair')} "
            f"· {plural(m['labels'], 'label')} · {m['seconds']:.1f} s",
            f"saved in {record.path}",
            f"{'adopted' if adoption['adopted'] else 'NOT adopted'}: {adoption['reason']}; "
            f"in use: v{service.version}",
        ],
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the model versions."""
    from rlhf_desktop.storage.repo import Repository

    service = _current_model()
    repo = Repository.open()
    try:
        versions = repo.versions.list_all()
    finally:
        repo.close()
    rows = []
    lines = [] if versions else ["no model versions yet: run `train`"]
    for v in versions:
        adoption = v.metrics.get("adoption") or {"adopted": True, "reason": "(before the gate)"}
        acc = v.metrics.get("cv_accuracy")
        in_use = v.version == service.version
        rows.append({"version": v.version, "created_at": v.created_at, "pairs": v.pairs,
                     "labels": v.labels, "cv_accuracy": acc, "adopted": adoption["adopted"],
                     "reason": adoption.get("reason", ""), "in_use": in_use, "path": v.path})
        acc_text = "  n/a " if acc is None else f"{acc * 100:5.1f} %"
        lines.append(f"{'*' if in_use else ' '} v{v.version:<4} {acc_text}  "
                     f"{plural(v.pairs, 'pair'):>11}  "
                     f"{'adopted' if adoption['adopted'] else 'not adopted'}: "
                     f"{adoption.get('reason', '')}")
    _emit({"in_use": service.version, "versions": rows}, args.json, lines)
    return 0


def cmd_use(args: argparse.Namespace) -> int:
    """Use one version from now on (rollback), or the newest adopted one (``latest``)."""
    from rlhf_desktop.reward.model import TinyRewardModel
    from rlhf_desktop.services.ranking.rewards import pin_version
    from rlhf_desktop.storage.repo import Repository

    if args.version == "latest":
        pin_version(None)
        service = _current_model()
        print(f"using the newest adopted version: v{service.version}")
        return 0
    number = int(args.version.lstrip("vV")) if args.version.lstrip("vV").isdigit() else None
    repo = Repository.open()
    try:
        known = {v.version: v for v in repo.versions.list_all()}
    finally:
        repo.close()
    if number is None or number not in known:
        listed = ", ".join(f"v{n}" for n in known) or "none"
        raise CliError(f"no model version {args.version!r} (versions: {listed}; or `latest`)")
    TinyRewardModel.load(known[number].path)  # refuses a file that does not verify
    pin_version(number)
    print(f"using v{number} from now on (the window re-ranks with it when it next loads "
          "the model; `rlhf-desktop use latest` goes back to the newest adopted version)")
    return 0


def _current_model() -> Any:
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.storage.repo import Repository

    service = RewardService()
    repo = Repository.open()
    try:
        service.load_current(repo)
    finally:
        repo.close()
    for warning in service.load_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return service


def cmd_eval(args: argparse.Namespace) -> int:
    """Pairwise accuracy on a file."""
    import numpy as np

    from rlhf_desktop.core.formats import parse_lines
    from rlhf_desktop.reward.training import pair_matrix, pairwise_accuracy

    service = _current_model()
    model = service.model
    if not model.trained:
        raise CliError("no trained reward model yet: import or label pairs, then run `train`")
    path = Path(args.data)
    if not path.is_file():
        raise CliError(f"{path} does not exist")
    with path.open("rb") as fh:
        parsed = parse_lines(fh)
    for error in parsed.errors:
        print(f"{path}:{error.line}: skipped: {error.message}", file=sys.stderr)
    if not parsed.pairs:
        raise CliError(f"{path} holds no usable pairs")
    diffs = pair_matrix(parsed.pairs, model.features, service.embedder).diffs
    margins = diffs @ model.weights
    seen, source = _seen_in_training(model, parsed.pairs)
    unseen = ~seen
    result: dict[str, Any] = {
        "pairs": len(parsed.pairs),
        "accuracy": pairwise_accuracy(margins),
        "ties": int(np.sum(margins == 0)),
        "mean_margin": float(np.mean(margins)),
        "skipped_lines": len(parsed.errors),
        "model_version": model.version,
        "pairs_in_training_data": int(seen.sum()),
        "training_data_source": source,
        "unseen_pairs": int(unseen.sum()),
        "accuracy_unseen": pairwise_accuracy(margins[unseen]) if unseen.any() else None,
        "warnings": [],
    }
    lines = [
        f"model v{model.version}: pairwise accuracy {result['accuracy'] * 100:.1f} % "
        f"on {plural(result['pairs'], 'pair')} ({plural(result['ties'], 'tie')})",
    ]
    if seen.any():
        where = ("the model's training data" if source == "model"
                 else "this data folder's stored pairs (the model may have been trained on them)")
        unseen_text = ("none are unseen, so this measures memory, not generalisation"
                       if not unseen.any() else
                       f"accuracy on the {plural(int(unseen.sum()), 'unseen pair')}: "
                       f"{result['accuracy_unseen'] * 100:.1f} %")
        warning = (f"{int(seen.sum())} of {plural(len(parsed.pairs), 'eval pair')} "
                   f"({seen.mean() * 100:.0f} %) are in {where}; {unseen_text}")
        result["warnings"].append(warning)
        print(f"warning: {warning}", file=sys.stderr)
    _emit(result, args.json, lines)
    return 0


def _seen_in_training(model: Any, pairs: Sequence[Any]) -> tuple[Any, str]:
    """Which pairs the model was trained on, and how that is known.

    "model": the keys saved with the model (exact). "stored": a model saved before keys
    existed, so the pairs stored in this data folder stand in (an upper bound).
    """
    import numpy as np

    from rlhf_desktop.reward.model import pair_key

    keys = model.train_keys
    source = "model"
    if not keys:
        from rlhf_desktop.storage.repo import Repository

        repo = Repository.open()
        try:
            keys = {pair_key(p.prompt_text, p.chosen, p.rejected) for p in repo.pairs.list_all()}
        finally:
            repo.close()
        source = "stored"
    seen = np.array([pair_key(p.prompt_text, p.chosen, p.rejected) in keys for p in pairs],
                    dtype=bool)
    return seen, source


def cmd_score(args: argparse.Namespace) -> int:
    """Score replies."""
    service = _current_model()
    ranked = service.rank(args.prompt, args.responses)
    order = sorted(range(len(args.responses)), key=lambda i: -ranked.scores[i])
    data = {
        "model_version": ranked.version,
        "scores": ranked.scores,
        "ranking": order,
    }
    version = "untrained (all scores 0)" if ranked.version is None else f"v{ranked.version}"
    lines = [f"model {version}"]
    for rank, i in enumerate(order, start=1):
        lines.append(f"{rank}. [{ranked.scores[i]:+.3f}] {args.responses[i]}")
    _emit(data, args.json, lines)
    return 0


def _no_pair_labels(by_kind: dict[str, int]) -> str:
    """" (+ 1 tie, 2 all bad: no pairs)" for the labels ``stats`` does not count, or ""."""
    words = (("tie", "tie", "ties"), ("all_bad", "all bad", "all bad"))
    parts = [f"{n} {one if n == 1 else many}" for kind, one, many in words
             if (n := int(by_kind.get(kind) or 0))]
    return f" (+ {', '.join(parts)}: no pairs)" if parts else ""


def cmd_stats(args: argparse.Namespace) -> int:
    """Counts, pairs by label kind (as the dataset card counts them) and the reward model in
    use (the pinned version, else the newest adopted one; a version that was not adopted is
    named as the newest, never as the one in use)."""
    from collections import Counter

    from rlhf_desktop import config
    from rlhf_desktop.services.ranking.rewards import candidate_order, pinned_version
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    try:
        stats = repo.stats()
        pairs = repo.provenance.with_metadata(repo.pairs.list_all())
        versions = repo.versions.list_all()
    finally:
        repo.close()
    stats["data_dir"] = str(config.data_dir())
    kinds = Counter(str((p.metadata or {}).get("label_kind") or p.source) for p in pairs)
    stats["pairs_by_source"] = dict(sorted(kinds.items()))
    order = candidate_order(versions, pinned_version())
    in_use = order[0] if order else None
    newest = versions[-1] if versions else None
    stats["model_version"] = None if in_use is None else in_use.version
    stats["model_metrics"] = None if in_use is None else in_use.metrics
    stats["newest_model_version"] = None if newest is None else newest.version
    acc = None if in_use is None else in_use.cv_accuracy
    by_source = ", ".join(f"{k} {n}" for k, n in stats["pairs_by_source"].items())
    model = "none yet"
    if in_use is not None:
        model = f"v{in_use.version} in use" + (
            "" if acc is None else f" · CV accuracy {acc * 100:.1f} %")
    if newest is not None and in_use is not None and newest.version != in_use.version:
        adoption = newest.metrics.get("adoption") or {}
        why = "not adopted" if not adoption.get("adopted", True) else "not in use"
        model += f" (newest: v{newest.version}, {why})"
    _emit(stats, args.json, [
        f"data folder   {stats['data_dir']}",
        f"chats         {stats['conversations']} ({stats['turns']} turns)",
        f"labels        {stats['labels']}" + _no_pair_labels(stats.get("labels_by_kind") or {}),
        f"pairs         {stats['pairs']}" + (f" ({by_source})" if by_source else ""),
        f"model         {model}",
    ])
    return 0
