"""Local DPO fine-tuning of the chat model from the user's picks (Qt-free).

Importing this package is cheap: torch, transformers, TRL and peft (the ``tune`` extra) are
imported only by a run, which happens in its own process (``process.TuneProcess`` or
``python -m rlhf_desktop.tune --config FILE``, also under ``accelerate launch``).

- ``options``: the run's settings (JSON/YAML), validated;
- ``base_model``: the built-in GGUF dequantised once into a cached transformers folder;
- ``data``: pairs read from any importable file, measured against ``max_length``, every
  pair left out or cut reported;
- ``train``: LoRA + TRL's DPOTrainer, JSON-lines progress, checkpoints, resume, stop;
- ``convert``: the adapter to GGUF with llama.cpp's converter (fetched once);
- ``versions``: ``chat_models/vNNNN`` with ``adapter.gguf`` and ``manifest.json``;
- ``process``: a run in a separate low-priority process, followed and cancelled;
- ``cli``: ``rlhf-desktop tune`` (``add_tune_parser``, ``run_tune``).
"""

from rlhf_desktop.tune.options import TuneConfig, TuneConfigError, load_config

__all__ = ["TuneConfig", "TuneConfigError", "load_config"]
