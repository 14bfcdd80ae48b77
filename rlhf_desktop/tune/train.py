"""DPO with LoRA through TRL's DPOTrainer: the body of ``python -m rlhf_desktop.tune``
(``method: reward`` is in ``reward_train.py`` and shares the callback and stop request).

Runs unchanged under ``accelerate launch`` (any number of processes): only the main process
writes progress, reports and the result. A checkpoint is saved every ``save_steps`` steps
and a new run with the same ``output_dir`` resumes from the last one. A stop request
(SIGTERM/SIGINT, see ``__main__``) ends the run after the current step, with a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_desktop.tune import data as tune_data
from rlhf_desktop.tune.base_model import BaseModel, cache_dir, resolve
from rlhf_desktop.tune.options import TuneConfig, TuneConfigError
from rlhf_desktop.tune.progress import Progress

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"


class StopRequest:
    """Set from a signal handler; the trainer stops (and saves) at the end of the step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        """Ask the run to stop after the current step."""
        self._event.set()

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()


@dataclass
class TuneResult:
    """What a run produced (``status``: ``completed`` or ``cancelled``)."""

    status: str
    steps: int
    max_steps: int
    adapter_dir: str | None
    base: BaseModel
    metrics: dict[str, float | None] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _callback(progress: Progress, stop: StopRequest) -> Any:
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Step events from the trainer's logs; the stop request at each step's end."""

        def __init__(self) -> None:
            self.last: dict[str, float | None] = {}
            self._step_started = time.monotonic()
            self._cpu_started = time.process_time()
            self._durations: list[float] = []
            self._cpu: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step_started = time.monotonic()
            self._cpu_started = time.process_time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._durations.append(time.monotonic() - self._step_started)
            self._cpu.append(time.process_time() - self._cpu_started)
            if stop.requested:
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args: Any, state: Any, control: Any,
                   logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            seconds = self._durations[-1] if self._durations else None
            recent = self._durations[-5:]
            per_step = sum(recent) / len(recent) if recent else None
            left = max(state.max_steps - state.global_step, 0)
            self.last = {  # DPOTrainer's names, else RewardTrainer's
                "loss": logs.get("loss"),
                "accuracy": logs.get("rewards/accuracies", logs.get("accuracy")),
                "margin": logs.get("rewards/margins", logs.get("margin")),
            }
            progress.emit(
                "step", step=state.global_step, max_steps=state.max_steps,
                epoch=logs.get("epoch"), **self.last,
                chosen_reward=logs.get("rewards/chosen"),
                rejected_reward=logs.get("rewards/rejected"),
                learning_rate=logs.get("learning_rate"),
                seconds=None if seconds is None else round(seconds, 2),
                cpu_seconds=round(self._cpu[-1], 2) if self._cpu else None,
                eta_s=None if per_step is None else round(per_step * left, 1),
            )

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                progress.emit("checkpoint", step=state.global_step, path=str(path))

    return ProgressCallback()


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder of a run, if any."""
    folder = Path(output_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    found: str | None = get_last_checkpoint(str(folder))
    return found


def prepare(cfg: TuneConfig, progress: Progress | None) -> tuple[Any, Progress, Path]:
    """accelerate's state (one distributed run, or refused), progress, threads, the run
    folder; emits ``start``."""
    import torch
    from accelerate import PartialState

    state = PartialState()
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > state.num_processes:  # e.g. `accelerate launch --multi_gpu` without GPUs
        raise TuneConfigError(
            f"accelerate started {world} processes, but here they do not form one distributed "
            f"run (no GPUs?), so each would train alone on every pair; on a CPU use "
            f"--num_processes 1")
    progress = progress or Progress(cfg.progress_file or None, enabled=state.is_main_process)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    out = Path(cfg.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    progress.emit("start", pid=os.getpid(), processes=state.num_processes,
                  torch_threads=torch.get_num_threads(), config=cfg.to_dict())
    return state, progress, out


def finished_steps(checkpoint: str | None) -> int | None:
    """The step count of a checkpoint that ended its run (global_step reached max_steps), else
    None. (transformers resumed from such a checkpoint still trains one more step.)"""
    if checkpoint is None:
        return None
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
        step, most = int(state["global_step"]), int(state["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if 0 < most <= step else None


def load_base(cfg: TuneConfig, progress: Progress, state: Any) -> tuple[BaseModel, Any]:
    """The base model's files (one process dequantises a GGUF, the others wait) and its
    tokenizer (padding with EOS where it has no pad token); both methods start here."""
    progress.emit("stage", stage="base model")
    with state.main_process_first():
        base = resolve(cfg.model, cache_dir(cfg.cache_dir))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.load_from)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return base, tokenizer


def run(cfg: TuneConfig, progress: Progress | None = None,
        stop: StopRequest | None = None) -> TuneResult:
    """Train; return what was produced. Raises TuneConfigError for bad input."""
    import torch

    started = time.monotonic()
    stop = stop or StopRequest()
    state, progress, out = prepare(cfg, progress)
    main = state.is_main_process

    base, tokenizer = load_base(cfg, progress, state)
    from transformers import AutoModelForCausalLM

    progress.emit("stage", stage="data")
    records = tune_data.read_pairs(cfg.data, cfg.system_prompt)
    kept, report = tune_data.select(records, tokenizer, cfg.max_length, cfg.data)
    if main:
        tune_data.write_report(report, out)
    progress.emit("data", summary=report.summary(), **report.to_dict())
    if not kept:
        raise TuneConfigError(f"no pair fits in max_length {cfg.max_length}: "
                              f"{report.summary()}")

    resume = last_checkpoint(out)
    finished = finished_steps(resume)
    if finished is not None and (out / ADAPTER_DIR / "adapter_config.json").is_file():
        # a finished run started again: its adapter is saved, there is nothing to train
        progress.emit("stage", stage="already trained", steps=finished, resume_from=resume)
        return TuneResult(status="completed", steps=finished, max_steps=finished,
                          adapter_dir=str(out / ADAPTER_DIR) if main else None, base=base,
                          data_report=report.to_dict(), seconds=time.monotonic() - started)

    from datasets import Dataset

    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")}
                                 for r in kept])
    progress.emit("stage", stage="loading model")
    model = AutoModelForCausalLM.from_pretrained(
        base.load_from, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    steps_cap = budget_steps(cfg, len(dataset))
    if steps_cap != cfg.max_steps:
        progress.emit("stage", stage="pair budget", pair_budget=cfg.pair_budget,
                      max_steps=steps_cap)
        cfg = dataclasses.replace(cfg, max_steps=steps_cap)
    trainer = _trainer(cfg, model, tokenizer, dataset, _callback(progress, stop), out)
    progress.emit("stage", stage="training", resume_from=resume,
                  trainer_pairs=len(trainer.train_dataset))  # after TRL's own filter
    if not stop.requested:  # a cancel while loading: leave the checkpoints as they are
        trainer.train(resume_from_checkpoint=resume)
    steps, max_steps = trainer.state.global_step, trainer.state.max_steps
    if stop.requested and not steps and resume:
        steps = int(Path(resume).name.rsplit("-", 1)[-1])
    cancelled = stop.requested and (steps < max_steps or not max_steps)
    adapter: str | None = None
    if main and not cancelled:
        adapter = str(out / ADAPTER_DIR)
        trainer.save_model(adapter)
    state.wait_for_everyone()
    callback = next(c for c in trainer.callback_handler.callbacks
                    if type(c).__name__ == "ProgressCallback")
    return TuneResult(
        status="cancelled" if cancelled else "completed", steps=steps, max_steps=max_steps,
        adapter_dir=adapter, base=base, metrics=dict(callback.last),
        data_report=report.to_dict(), seconds=time.monotonic() - started,
    )


def budget_steps(cfg: TuneConfig, pairs: int) -> int:
    """Optimizer steps for ``pairs`` pairs: ``max_steps`` when set; else 0 (``epochs``
    decide) unless ``pair_budget`` caps the pairs seen below what the epochs would take."""
    if cfg.max_steps or not cfg.pair_budget:
        return cfg.max_steps
    per_step = cfg.batch_size * cfg.grad_accum
    by_epochs = math.ceil(cfg.epochs * math.ceil(pairs / cfg.batch_size) / cfg.grad_accum)
    by_budget = max(1, cfg.pair_budget // per_step)
    return by_budget if by_budget < by_epochs else 0


def trainer_args(cfg: TuneConfig, out: Path) -> dict[str, Any]:
    """The transformers TrainingArguments both methods share (DPO and reward)."""
    import torch

    # bf16 without a GPU is refused unless the trainer is told it runs on the CPU
    cpu_only = cfg.bf16 and not torch.cuda.is_available()
    return dict(
        output_dir=str(out / CHECKPOINTS_DIR),
        max_length=cfg.max_length,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_steps=cfg.max_steps or -1,
        num_train_epochs=cfg.epochs,
        seed=cfg.seed,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.keep_checkpoints,
        logging_steps=1,
        report_to="none",
        bf16=cfg.bf16,
        use_cpu=cpu_only,
        gradient_checkpointing=cfg.gradient_checkpointing,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a share of the steps
    )


def _trainer(cfg: TuneConfig, model: Any, tokenizer: Any, dataset: Any, callback: Any,
             out: Path) -> Any:
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    losses: dict[str, Any] = {"loss_type": list(cfg.loss_type)}
    if cfg.loss_weights:
        losses["loss_weights"] = [float(w) for w in cfg.loss_weights]
    args = DPOConfig(**trainer_args(cfg, out), beta=cfg.beta,
                     precompute_ref_log_probs=cfg.precompute_ref_log_probs, **losses)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora, callbacks=[callback])
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints Python dicts into the JSON lines
    return trainer
