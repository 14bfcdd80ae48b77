"""The tuning run's settings: one JSON or YAML file (``python -m rlhf_desktop.tune --config``).

``method: dpo`` tunes the chat model (a LoRA adapter); ``method: reward`` trains a reward model
(TRL's RewardTrainer, ``AutoModelForSequenceClassification`` with one output) that the app can
rank replies with.

Every key is optional except ``data`` and ``output_dir``; unknown keys are refused with the list
of known ones, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

METHODS: tuple[str, ...] = ("dpo", "reward")
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
              "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft",
              "sigmoid_norm")
"""TRL 1.16's DPO loss types."""
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
              "polynomial", "inverse_sqrt")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


REWARD_DEFAULTS: dict[str, Any] = {"lora_targets": ["q_proj", "v_proj"], "learning_rate": 5e-4,
                                   "lr_scheduler": "constant", "warmup_ratio": 0.0,
                                   "epochs": 1.0, "pair_budget": 0}
"""``method: reward`` keeps the settings its benchmark measured (benchmarks/reward_trainer.py);
the dataclass defaults are DPO's recipe, chosen by the loop benchmark (benchmarks/loop.py)."""


class TuneConfigError(ValueError):
    """A config file or value the user must fix; the message says which and how."""


@dataclass
class TuneConfig:
    """What to train, on what, and where the result goes."""

    data: str = ""
    """Pairs: the app's ``trl-conversational`` export, or any file ``rlhf-desktop import`` reads."""
    output_dir: str = ""
    """The run folder: checkpoints, ``progress.jsonl``, ``data-report.json``, ``adapter/``."""
    method: str = "dpo"
    system_prompt: str = ""
    """Put before every prompt that has no system message (the chat's system prompt, so the
    model is tuned in the context it answers in)."""
    model: str = ""
    """Empty: the built-in GGUF (SmolLM2-135M-Instruct). Else a .gguf file, a transformers
    folder, or a model name on the Hugging Face hub (for GPU machines)."""
    max_length: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    """LoRA on every linear layer (all 7 projections), as TRL's "LoRA Without Regret"
    recommends; the loop benchmark's winner (docs/benchmarks.md). Before: q_proj, v_proj."""
    learning_rate: float = 2e-4
    beta: float = 0.1
    max_steps: int = 0
    """Optimizer steps; 0: as many as ``epochs`` passes over the pairs take."""
    epochs: float = 2.0
    pair_budget: int = 240
    """At most this many pairs trained on (epochs × pairs, counted with repeats), so a run
    fits a time budget whatever the number of picks; 0: no cap. Ignored with ``max_steps``.
    240 (30 steps of 8) fits 30 minutes on the 2-core reference machine: 5.65 s a pair with
    both cores, about 23 minutes of training (``benchmarks/tune.py``); on one core (36-39
    CPU-minutes in the loop benchmark's tunes) it does not."""
    batch_size: int = 1
    grad_accum: int = 8
    """8 pairs a step, one pair at a time: the same pairs and the same loss as 2 × 4 (equal to
    6 digits), but no padding between pairs: 4 % faster and 3.0 GB instead of 5.0 GB at peak
    on the loop's own pairs (``benchmarks/tune.py``, the "recipe, …" rows)."""
    seed: int = 42
    threads: int = 0
    """torch threads in this process; 0: every CPU core. The run is at nice 19, so the window
    and llama.cpp take a core back whenever they need one; on an idle 2-core machine two
    threads tune 1.7 times as fast as one (5.65 against 9.44 s a pair, ``benchmarks/tune.py``);
    on cores kept busy by other work one thread was faster (set 1 then)."""
    precompute_ref_log_probs: bool = False
    """Compute the reference model's log-probabilities once before training (one forward
    pass per pair instead of one per pair and epoch)."""
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])
    """DPO: TRL's loss types, e.g. ``["sigmoid"]`` (DPO), ``["ipo"]``, ``["sigmoid", "sft"]``
    (DPO plus the chosen reply's likelihood), ``["sft"]`` (SFT on the picks)."""
    loss_weights: list[float] = field(default_factory=list)
    """One weight per ``loss_type`` (empty: 1 each)."""
    lr_scheduler: str = "cosine"
    """transformers' scheduler name: ``constant``, ``linear``, ``cosine``, ..."""
    warmup_ratio: float = 0.1
    """Share of the steps spent warming the learning rate up from 0."""
    save_steps: int = 1
    keep_checkpoints: int = 2
    progress_file: str = ""
    """Progress as JSON lines: this file, or stdout when empty."""
    cache_dir: str = ""
    """Where the dequantised base model and llama.cpp's converter are kept (default: the
    user cache folder, or $RLHF_DESKTOP_CACHE)."""
    export_gguf: bool = True
    """After training: convert the adapter to GGUF and register a chat-model version in the
    data folder (only for a GGUF base, whose file llama.cpp loads the adapter onto)."""
    bf16: bool = False
    """bf16 mixed precision (GPUs; slower on most CPUs). TRL's default is on; here it is off."""
    gradient_checkpointing: bool = False
    """Recompute activations to save memory (TRL's default is on; on CPU it costs time)."""
    lora: bool = True
    """reward: train LoRA adapters (and the score head), merged into the saved model; false:
    every weight (dpo always uses LoRA)."""
    eval_share: float = 0.2
    """reward: the share of the pairs held out of training, by prompt (pairs that share their
    first user message stay together), to measure the saved model's accuracy; 0: none."""
    eval_data: str = ""
    """reward: a separate file of test pairs; when set, every pair of ``data`` is trained on."""
    register: bool = True
    """reward: copy the finished model into ``<data folder>/rankers/rNNNN`` (Settings can
    then choose it as the ranker)."""

    def validate(self) -> None:
        """Raise TuneConfigError naming the first bad value."""
        if self.method not in METHODS:
            raise TuneConfigError(f"method {self.method!r} is not supported; use one of "
                                  f"{', '.join(METHODS)}")
        if not self.data:
            raise TuneConfigError("'data' is required: a JSONL file of pairs "
                                  "(rlhf-desktop export --format trl-conversational -o FILE)")
        if not self.output_dir:
            raise TuneConfigError("'output_dir' is required: the folder for checkpoints and "
                                  "the adapter")
        positive = {"max_length": self.max_length, "lora_r": self.lora_r,
                    "lora_alpha": self.lora_alpha, "batch_size": self.batch_size,
                    "grad_accum": self.grad_accum,
                    "save_steps": self.save_steps, "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TuneConfigError(f"'{name}' must be a whole number of at least 1, "
                                      f"not {value!r}")
        if isinstance(self.max_steps, bool) or self.max_steps < 0:
            raise TuneConfigError("'max_steps' must be 0 (use 'epochs') or more")
        if isinstance(self.pair_budget, bool) or self.pair_budget < 0:
            raise TuneConfigError("'pair_budget' must be 0 (no cap) or more")
        if not self.epochs > 0:
            raise TuneConfigError(f"'epochs' must be positive, not {self.epochs!r}")
        if self.max_length < 32:
            raise TuneConfigError("'max_length' must be at least 32 tokens")
        if not 0 < self.learning_rate < 1:
            raise TuneConfigError(f"'learning_rate' must be between 0 and 1, "
                                  f"not {self.learning_rate!r}")
        if not self.beta > 0:
            raise TuneConfigError(f"'beta' must be positive, not {self.beta!r}")
        if not 0 <= self.lora_dropout < 1:
            raise TuneConfigError("'lora_dropout' must be in [0, 1)")
        if self.threads < 0:
            raise TuneConfigError("'threads' must be 0 (every core) or more")
        if not 0 <= self.eval_share < 1:
            raise TuneConfigError(f"'eval_share' must be in [0, 1), not {self.eval_share!r}")
        if self.method == "dpo" and not self.lora:
            raise TuneConfigError("'lora: false' (full fine-tuning) is for method 'reward'; "
                                  "DPO here always trains a LoRA adapter")
        bad_loss = [t for t in self.loss_type if t not in LOSS_TYPES]
        if not self.loss_type or bad_loss:
            raise TuneConfigError(f"'loss_type' must list some of {', '.join(LOSS_TYPES)}, "
                                  f"not {self.loss_type!r}")
        try:
            weights = [float(w) for w in self.loss_weights]
        except (TypeError, ValueError):
            weights = []
        if self.loss_weights and len(weights) != len(self.loss_type):
            raise TuneConfigError("'loss_weights' needs one number per 'loss_type'")
        if self.lr_scheduler not in SCHEDULERS:
            raise TuneConfigError(f"'lr_scheduler' must be one of {', '.join(SCHEDULERS)}")
        if not 0 <= self.warmup_ratio < 1:
            raise TuneConfigError(f"'warmup_ratio' must be in [0, 1), not {self.warmup_ratio!r}")
        if not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets):
            raise TuneConfigError(f"'lora_targets' must list module names, e.g. "
                                  f"{list(LORA_TARGETS[:4])}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return asdict(self)

    @staticmethod
    def from_mapping(data: dict[str, Any], base_dir: Path | None = None) -> TuneConfig:
        """Build and validate; relative paths are taken relative to ``base_dir``."""
        known = {f.name: f for f in fields(TuneConfig)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise TuneConfigError(f"unknown key(s) {', '.join(unknown)}; known keys: "
                                  f"{', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        defaults = TuneConfig()
        for name, value in data.items():
            default = getattr(defaults, name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TuneConfigError(f"'{name}' must be true or false, not {value!r}")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TuneConfigError(f"'{name}' must be a number, not {value!r}")
                value = float(value)
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TuneConfigError(f"'{name}' must be a whole number, not {value!r}")
            elif isinstance(default, str):
                if not isinstance(value, str):
                    raise TuneConfigError(f"'{name}' must be text, not {value!r}")
            elif isinstance(default, list):
                if isinstance(value, str):
                    value = [v.strip() for v in value.split(",") if v.strip()]
                if not isinstance(value, list):
                    raise TuneConfigError(f"'{name}' must be a list, not {value!r}")
            values[name] = value
        if values.get("method") == "reward":  # the recipe was chosen for DPO only
            values = {**REWARD_DEFAULTS, **values}
        config = TuneConfig(**values)
        if base_dir is not None:
            for name in ("data", "output_dir", "progress_file", "cache_dir", "eval_data"):
                text = getattr(config, name)
                if text and not Path(text).expanduser().is_absolute():
                    setattr(config, name, str(base_dir / text))
            if config.model and (base_dir / config.model).exists():
                config.model = str(base_dir / config.model)
        config.validate()
        return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TuneConfig:
    """Read a ``.json``, ``.yaml`` or ``.yml`` file (relative paths: from the file's folder)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise TuneConfigError(f"config file {file} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise TuneConfigError("reading YAML needs PyYAML (pip install pyyaml), or "
                                  "write the config as JSON") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TuneConfigError(f"{file} is not valid YAML: {exc}") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TuneConfigError(f"{file} is not valid JSON: {exc.msg} at line {exc.lineno} "
                                  f"column {exc.colno}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TuneConfigError(f"{file} must hold one mapping of settings")
    data.update(overrides or {})
    return TuneConfig.from_mapping(data, base_dir=file.resolve().parent)
