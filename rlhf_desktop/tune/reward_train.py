"""A reward model with TRL's RewardTrainer: ``method: reward`` of ``python -m rlhf_desktop.tune``.

``AutoModelForSequenceClassification(num_labels=1)`` from the same base as DPO (the built-in
GGUF, dequantised once, or a folder or hub name), LoRA on ``lora_targets`` plus the score head
(or every weight with ``lora: false``), trained on the pairs the held-out split leaves.

Text is tokenised here, once, with :func:`rlhf_desktop.reward.hf_ranker.encode` (the same code
that scores replies in the app): the chat template, cut from the left to ``max_length``, so no
pair is dropped (TRL's own filter drops pairs that are too long) and every cut pair is listed in
``data-report.json``. The finished model is merged and saved as a plain transformers folder
(``<output_dir>/ranker``, bf16 weights) with ``ranker.json`` (base, pairs, steps, held-out
accuracy measured on the saved folder) and ``train-keys.json``. Runs unchanged under
``accelerate launch``: only the main process saves, measures and writes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_desktop.reward.hf_ranker import META_FILE, TRAIN_KEYS_FILE, encode, read_meta
from rlhf_desktop.tune import data as tune_data
from rlhf_desktop.tune.base_model import BaseModel
from rlhf_desktop.tune.options import TuneConfig, TuneConfigError
from rlhf_desktop.tune.progress import Progress
from rlhf_desktop.tune.train import (
    StopRequest,
    _callback,
    finished_steps,
    last_checkpoint,
    load_base,
    prepare,
    trainer_args,
)

RANKER_DIR = "ranker"


@dataclass
class RewardResult:
    """What a reward run produced (``status``: ``completed`` or ``cancelled``)."""

    status: str
    steps: int
    max_steps: int
    model_dir: str | None
    base: BaseModel
    metrics: dict[str, float | None] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    held_out: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _encoded(records: list[dict[str, Any]], tokenizer: Any, max_length: int
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TRL's pre-tokenised columns per record, and the records whose start was cut."""
    rows: list[dict[str, Any]] = []
    cut: list[dict[str, Any]] = []
    for record in records:
        prompt = record["prompt"]
        chosen, cut_c = encode(tokenizer, prompt, record["chosen"][0]["content"], max_length)
        rejected, cut_r = encode(tokenizer, prompt, record["rejected"][0]["content"],
                                 max_length)
        rows.append({"chosen_ids": chosen, "rejected_ids": rejected})
        if cut_c or cut_r:
            last_user = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
            cut.append({"line": record["line"], "preview": " ".join(last_user.split())[:60]})
    return rows, cut


def _data(cfg: TuneConfig, tokenizer: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                    list[dict[str, Any]], dict[str, Any]]:
    """(train records, their token rows, held-out records, report)."""
    records = tune_data.read_pairs(cfg.data, cfg.system_prompt)
    if cfg.eval_data:
        train, held = records, tune_data.read_pairs(cfg.eval_data, cfg.system_prompt)
        split = f"every pair of {cfg.data}; held out: {cfg.eval_data}"
    else:
        train, held = tune_data.split_by_prompt(records, cfg.eval_share, cfg.seed)
        split = (f"{len(held)} of {len(records)} pairs held out by prompt "
                 f"(eval_share {cfg.eval_share})" if held else "no pairs held out")
    if not train:
        raise TuneConfigError(f"{cfg.data} leaves no pair to train on")
    rows, cut = _encoded(train, tokenizer, cfg.max_length)
    report = {"file": cfg.data, "max_length": cfg.max_length, "pairs": len(records),
              "used": len(train), "held_out": len(held), "split": split,
              "dropped_prompt_too_long": [], "truncated": cut,
              "note": "pairs longer than max_length are cut from the left (the start of the "
                      "prompt goes first); none is left out"}
    return train, rows, held, report


def _summary(report: dict[str, Any]) -> str:
    text = (f"{report['used']} pairs to train on at max_length {report['max_length']}; "
            f"{report['split']}")
    if report["truncated"]:
        text += f"; {len(report['truncated'])} cut from the left to fit"
    return text


def run_reward(cfg: TuneConfig, progress: Progress | None = None,
               stop: StopRequest | None = None) -> RewardResult:
    """Train a reward model; return what was produced. Raises TuneConfigError for bad input."""
    import torch

    started = time.monotonic()
    stop = stop or StopRequest()
    state, progress, out = prepare(cfg, progress)
    main = state.is_main_process

    base, tokenizer = load_base(cfg, progress, state)
    from transformers import AutoModelForSequenceClassification, set_seed

    progress.emit("stage", stage="data")
    train_records, rows, held, report = _data(cfg, tokenizer)
    if main:
        (out / "data-report.json").write_text(json.dumps(report, indent=1) + "\n",
                                              encoding="utf-8")
    progress.emit("data", summary=_summary(report), **report)

    resume = last_checkpoint(out)
    done = _already_done(out, resume, base, report)
    if done is not None:
        progress.emit("stage", stage="already trained", steps=done.steps, resume_from=resume)
        done.seconds = time.monotonic() - started
        return done

    from datasets import Dataset

    dataset = Dataset.from_list(rows)
    progress.emit("stage", stage="loading model")
    set_seed(cfg.seed)  # the score head starts random
    model = AutoModelForSequenceClassification.from_pretrained(
        base.load_from, num_labels=1, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = _trainer(cfg, model, tokenizer, dataset, _callback(progress, stop), out)
    progress.emit("stage", stage="training", resume_from=resume,
                  trainer_pairs=len(trainer.train_dataset))
    if not stop.requested:
        trainer.train(resume_from_checkpoint=resume)
    steps, max_steps = trainer.state.global_step, trainer.state.max_steps
    if stop.requested and not steps and resume:
        steps = int(Path(resume).name.rsplit("-", 1)[-1])
    cancelled = stop.requested and (steps < max_steps or not max_steps)
    callback = next(c for c in trainer.callback_handler.callbacks
                    if type(c).__name__ == "ProgressCallback")
    result = RewardResult(
        status="cancelled" if cancelled else "completed", steps=steps, max_steps=max_steps,
        model_dir=None, base=base, metrics=dict(callback.last), data_report=report)
    if main and not cancelled:
        progress.emit("stage", stage="saving")
        folder = out / RANKER_DIR
        save_merged(trainer, tokenizer, folder)
        progress.emit("stage", stage="held-out accuracy", pairs=len(held))
        result.held_out = held_out_accuracy(folder, held)
        result.model_dir = str(folder)
        result.seconds = time.monotonic() - started
        write_meta(folder, cfg, result, [tune_data.record_key(r) for r in train_records])
    state.wait_for_everyone()
    result.seconds = time.monotonic() - started
    return result


def _already_done(out: Path, resume: str | None, base: BaseModel, report: dict[str, Any]
                  ) -> RewardResult | None:
    """The saved result of a run that already finished (started again: nothing to train)."""
    steps = finished_steps(resume)
    meta = read_meta(out / RANKER_DIR)
    if steps is None or meta.get("steps") != steps:
        return None
    return RewardResult(status="completed", steps=steps, max_steps=steps,
                        model_dir=str(out / RANKER_DIR), base=base,
                        metrics=dict(meta.get("metrics") or {}), data_report=report,
                        held_out=dict(meta.get("held_out") or {}))


def _trainer(cfg: TuneConfig, model: Any, tokenizer: Any, dataset: Any, callback: Any,
             out: Path) -> Any:
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(**trainer_args(cfg, out))
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        # SEQ_CLS: peft also trains (and saves) the new score head
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                 lora_dropout=cfg.lora_dropout,
                                 target_modules=list(cfg.lora_targets), task_type="SEQ_CLS")
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset,
                            processing_class=tokenizer, peft_config=peft_config,
                            callbacks=[callback])
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints Python dicts into the JSON lines
    return trainer


def save_merged(trainer: Any, tokenizer: Any, folder: Path) -> None:
    """The trained model, LoRA merged in, as a plain transformers folder (bf16 weights)."""
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    tmp = folder.with_name(f"{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def held_out_accuracy(folder: Path, held: list[dict[str, Any]]) -> dict[str, Any]:
    """The saved folder's accuracy on the held-out pairs, scored as the app scores them."""
    if not held:
        return {"pairs": 0, "accuracy": None}
    from rlhf_desktop.reward.hf_ranker import HFRanker, pairwise_accuracy

    ranker = HFRanker.load(folder)
    items: list[tuple[Any, str]] = []
    for record in held:
        items += [(record["prompt"], record["chosen"][0]["content"]),
                  (record["prompt"], record["rejected"][0]["content"])]
    started = time.monotonic()
    scores = ranker.score_many(items)
    margins = [scores[i] - scores[i + 1] for i in range(0, len(scores), 2)]
    return {"pairs": len(held), "accuracy": pairwise_accuracy(margins),
            "lines": [r["line"] for r in held], "seconds": round(time.monotonic() - started, 1)}


def write_meta(folder: Path, cfg: TuneConfig, result: RewardResult, keys: list[str]) -> None:
    """``ranker.json`` and ``train-keys.json`` beside the weights."""
    base = result.base
    report = result.data_report
    meta = {
        "kind": "reward-model",
        "method": "reward",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": {"name": base.gguf.name if base.gguf else base.load_from,
                 "gguf": str(base.gguf) if base.gguf else None, "sha256": base.gguf_sha256,
                 "load_from": base.load_from},
        "pairs": {"file": report.get("file"), "total": report.get("pairs"),
                  "used": report.get("used"), "cut_lines": [p["line"] for p in
                                                            report.get("truncated", [])]},
        "held_out": result.held_out,
        "steps": result.steps,
        "metrics": result.metrics,
        "max_length": cfg.max_length,
        "lora": cfg.lora,
        "seconds": round(result.seconds, 1),
        "run_dir": str(Path(cfg.output_dir).resolve()),
        "settings": {k: v for k, v in cfg.to_dict().items()
                     if k not in ("data", "output_dir", "progress_file", "cache_dir")},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    (folder / TRAIN_KEYS_FILE).write_text(json.dumps(sorted(set(keys))), encoding="utf-8")
