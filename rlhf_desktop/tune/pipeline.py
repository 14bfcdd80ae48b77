"""One tuning run end to end: train (train.py), convert the adapter to GGUF (convert.py) and
register it as a chat-model version (versions.py); or, for ``method: reward``, train a reward
model (reward_train.py) and register it as a ranker (reward/rankers.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rlhf_desktop.tune.base_model import cache_dir
from rlhf_desktop.tune.options import TuneConfig
from rlhf_desktop.tune.progress import Progress
from rlhf_desktop.tune.reward_train import RewardResult, run_reward
from rlhf_desktop.tune.train import StopRequest, TuneResult, run
from rlhf_desktop.tune.versions import ChatModelVersion

VERSION_MARKER = "version.json"


def tune(cfg: TuneConfig, progress: Progress, stop: StopRequest | None = None
         ) -> TuneResult | RewardResult:
    """Train; on success (main process, GGUF base) add a chat-model version, or for
    ``method: reward`` a ranker; emit ``done``."""
    if cfg.method == "reward":
        return tune_reward(cfg, progress, stop)
    result = run(cfg, progress, stop)
    rank = int(os.environ.get("RANK", "0") or 0)
    fields: dict[str, object] = {"status": result.status, "steps": result.steps,
                                 "max_steps": result.max_steps, "metrics": result.metrics,
                                 "adapter_dir": result.adapter_dir,
                                 "seconds": round(result.seconds, 1)}
    if result.status == "completed" and rank == 0 and result.adapter_dir:
        if cfg.export_gguf and result.base.gguf is not None:
            version = _already_exported(cfg, result) or export_version(cfg, result, progress)
            fields.update(version=version.version, version_dir=str(version.folder),
                          adapter_gguf=str(version.adapter))
        elif cfg.export_gguf:
            fields["note"] = ("the base is not a GGUF file: no chat-model version was made; "
                              "see docs/scale-out.md to bring the adapter back")
    if result.status == "cancelled":
        fields["note"] = "cancelled: the last checkpoint is kept; run again to resume"
    progress.emit("done", **fields)
    return result


def _already_exported(cfg: TuneConfig, result: TuneResult) -> ChatModelVersion | None:
    """The version this run folder made at this step count (a finished run started again)."""
    from rlhf_desktop.tune.versions import VersionError, get_version

    marker = Path(cfg.output_dir) / VERSION_MARKER
    try:
        made = json.loads(marker.read_text(encoding="utf-8"))
        if made["steps"] == result.steps:
            return get_version(int(made["version"]))
    except (OSError, ValueError, KeyError, TypeError, VersionError):
        pass
    return None


def export_version(cfg: TuneConfig, result: TuneResult, progress: Progress) -> ChatModelVersion:
    """GGUF adapter into ``<output_dir>/adapter.gguf``, then a new ``chat_models/vNNNN``."""
    from rlhf_desktop.tune.convert import lora_to_gguf
    from rlhf_desktop.tune.versions import register

    assert result.adapter_dir is not None and result.base.gguf is not None
    progress.emit("stage", stage="converting to GGUF")
    outfile = lora_to_gguf(Path(result.adapter_dir), Path(result.base.load_from),
                           Path(cfg.output_dir) / "adapter.gguf", cache_dir(cfg.cache_dir))
    report = result.data_report
    manifest = {
        "kind": "lora",
        "method": cfg.method,
        "base": {"gguf": str(result.base.gguf), "name": result.base.gguf.name,
                 "sha256": result.base.gguf_sha256},
        "pairs": {"file": report.get("file"), "total": report.get("pairs"),
                  "used": report.get("used"),
                  "left_out_lines": [p["line"] for p in
                                     report.get("dropped_prompt_too_long", [])]},
        "steps": result.steps,
        "metrics": result.metrics,
        "seconds": round(result.seconds, 1),
        "run_dir": str(Path(cfg.output_dir).resolve()),
        "settings": {k: v for k, v in cfg.to_dict().items()
                     if k not in ("data", "output_dir", "progress_file", "cache_dir")},
    }
    version = register(outfile, manifest)
    (Path(cfg.output_dir) / VERSION_MARKER).write_text(
        json.dumps({"version": version.version, "steps": result.steps}), encoding="utf-8")
    progress.emit("version", version=version.version, folder=str(version.folder))
    return version


RANKER_MARKER = "registered-ranker.json"


def tune_reward(cfg: TuneConfig, progress: Progress, stop: StopRequest | None = None
                ) -> RewardResult:
    """Train a reward model; on success (main process) register ``rankers/rNNNN``."""
    result = run_reward(cfg, progress, stop)
    rank = int(os.environ.get("RANK", "0") or 0)
    fields: dict[str, object] = {"status": result.status, "steps": result.steps,
                                 "max_steps": result.max_steps, "metrics": result.metrics,
                                 "model_dir": result.model_dir,
                                 "held_out": {k: v for k, v in result.held_out.items()
                                              if k != "lines"},
                                 "seconds": round(result.seconds, 1)}
    if result.status == "completed" and rank == 0 and result.model_dir and cfg.register:
        from rlhf_desktop.reward.rankers import register

        marker = Path(cfg.output_dir) / RANKER_MARKER
        made = _registered(marker, result.steps)  # a finished run started again
        if made is None:
            progress.emit("stage", stage="registering the ranker")
            ranker = register(Path(result.model_dir))
            made = {"ranker": ranker.name, "folder": str(ranker.folder)}
            marker.write_text(json.dumps({**made, "steps": result.steps}), encoding="utf-8")
            progress.emit("ranker", name=ranker.name, folder=str(ranker.folder))
        fields.update(ranker=made["ranker"], ranker_dir=made["folder"])
    if result.status == "cancelled":
        fields["note"] = "cancelled: the last checkpoint is kept; run again to resume"
    progress.emit("done", **fields)
    return result


def _registered(marker: Path, steps: int) -> dict[str, str] | None:
    """The ranker this run folder registered at this step count, if it still exists."""
    try:
        made = json.loads(marker.read_text(encoding="utf-8"))
        if made["steps"] == steps and (Path(made["folder"]) / "config.json").is_file():
            return {"ranker": str(made["ranker"]), "folder": str(made["folder"])}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
