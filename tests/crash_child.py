"""Child process for the crash tests: records picks as fast as it can, printing each label id
after its save has returned. Usage: python -m tests.crash_child DB_PATH N"""

from __future__ import annotations

import sys
from pathlib import Path

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.storage.repo import Repository


def main() -> None:
    db, n = Path(sys.argv[1]), int(sys.argv[2])
    repo = Repository.open(db)
    conv = repo.conversations.create("crash")
    i = 0
    while True:
        turn = repo.conversations.save_turn(Turn(
            conversation_id=conv.id,
            messages=[Message("user", f"prompt {i}")],
            provider="test", model="m", params=SamplingParams(n=n),
            candidates=[Candidate(index=k, text=f"reply {i}.{k}") for k in range(n)],
        ))
        label = repo.labels.pick(turn.id, turn.candidates[i % n].id, reason=f"r{i}")
        sys.stdout.write(f"{label}\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main()
