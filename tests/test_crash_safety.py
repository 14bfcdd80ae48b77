"""SIGKILL a process that records labels at random moments; nothing that returned is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from rlhf_desktop.storage.repo import Repository

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIALS = int(os.environ.get("RLHF_CRASH_TRIALS", "12"))
N = 4


def _run_and_kill(db, delay: float) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", str(db), str(N)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    assert proc.stdout is not None
    returned: list[int] = []
    # Wait for the first save so the kill lands while labels are being written.
    first = proc.stdout.readline()
    assert first.strip().isdigit(), proc.stderr.read() if proc.stderr else first
    returned.append(int(first))
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    returned += [int(x) for x in out.split() if x.strip().isdigit()]
    return returned


@pytest.mark.slow
def test_sigkill_never_loses_a_returned_label_or_leaves_half_a_label(tmp_path):
    rng = random.Random(1234)
    db = tmp_path / "crash.sqlite3"
    total_returned = 0
    for _ in range(TRIALS):
        returned = _run_and_kill(db, rng.uniform(0.0, 0.4))
        total_returned += len(returned)
        repo = Repository.open(db)
        assert repo.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = dict(repo.conn.execute(
            "SELECT l.id, COUNT(p.id) FROM labels l LEFT JOIN pairs p ON p.label_id = l.id"
            " GROUP BY l.id").fetchall())
        repo.close()
        missing = [label for label in returned if label not in counts]
        assert not missing, f"labels whose save returned are gone: {missing[:5]}"
        partial = {label: n for label, n in counts.items() if n != N - 1}
        assert not partial, f"labels with a partial set of pairs: {partial}"
    assert total_returned > TRIALS  # the child really was recording when killed
    print(f"\ncrash-safety: {TRIALS} SIGKILL trials, {total_returned} labels returned, "
          f"0 lost, 0 partial, integrity ok")


@pytest.mark.slow
def test_sigkill_during_model_save_leaves_a_loadable_model(data_home):
    from rlhf_desktop.reward.model import TinyRewardModel
    from rlhf_desktop.services.ranking.rewards import RewardService

    rng = random.Random(99)
    for _ in range(max(4, TRIALS // 2)):
        proc = subprocess.Popen([sys.executable, "-m", "tests.crash_save_child"], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.strip().isdigit(), proc.stderr.read() if proc.stderr else first
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        returned = [int(first), *(int(x) for x in out.split() if x.strip().isdigit())]
        repo = Repository.open()
        service = RewardService(embedder=object())  # type: ignore[arg-type]  # no scoring here
        model = service.load_current(repo)
        assert model.trained, service.load_warnings
        # Every version whose save returned loads; at most the one in flight may not.
        for version in returned:
            record = next(v for v in repo.versions.list_all() if v.version == version)
            TinyRewardModel.load(record.path)
        assert model.version >= returned[-1]
        repo.close()
    assert not list((data_home / "models").glob(".pending-*"))
    print(f"\nmodel-save crash: {max(4, TRIALS // 2)} SIGKILL trials, latest version loads")
