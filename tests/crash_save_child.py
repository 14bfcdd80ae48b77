"""Child for the model-save crash test: saves and records model versions in a loop, printing
each version number after it is recorded. Usage: python -m tests.crash_save_child"""

from __future__ import annotations

import sys

import numpy as np

from rlhf_desktop.reward.model import TinyRewardModel
from rlhf_desktop.services.ranking.rewards import store_version
from rlhf_desktop.storage.repo import Repository


def main() -> None:
    repo = Repository.open()
    rng = np.random.default_rng()
    while True:
        model = TinyRewardModel(weights=rng.normal(size=769), embedder_id="test")
        record = store_version(repo, model, {"pairs": 1, "labels": 1, "cv_accuracy": 0.5})
        sys.stdout.write(f"{record.version}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
