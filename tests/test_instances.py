"""Two processes on one data folder: windows refuse clearly, writers stay safe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rlhf_desktop import config
from rlhf_desktop.storage.lock import AlreadyRunning, InstanceLock
from rlhf_desktop.storage.repo import Repository

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_second_window_lock_is_refused_with_a_clear_message(data_home):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path;"
         "from rlhf_desktop.storage.lock import InstanceLock;"
         f"lock = InstanceLock(Path({str(data_home)!r})).acquire(); print('locked', flush=True);"
         "time.sleep(60)"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunning) as info:
            InstanceLock(data_home).acquire()
        assert str(holder.pid) in str(info.value) and "--data-dir" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    InstanceLock(data_home).acquire().release()  # a killed holder leaves no stale lock


def test_two_processes_recording_labels_at_once_lose_nothing(data_home):
    Repository.open().close()
    code = (
        "import sys; from tests.crash_child import *;"
        "from rlhf_desktop.storage.repo import Repository;"
        "from rlhf_desktop.domain import *;"
        "repo = Repository.open(); conv = repo.conversations.create('x'); ids = []\n"
        "for i in range(40):\n"
        "    t = repo.conversations.save_turn(Turn(conversation_id=conv.id,"
        " messages=[Message('user', 'q')],"
        " provider='p', model='m', params=SamplingParams(n=3),"
        " candidates=[Candidate(index=k, text=f'r{k}') for k in range(3)]))\n"
        "    ids.append(repo.labels.pick(t.id, t.candidates[0].id))\n"
        "print(' '.join(map(str, ids)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    returned = [int(x) for out in outs for x in out.split()]
    repo = Repository.open()
    assert len(returned) == 80 and repo.labels.count() == 80 and repo.pairs.count() == 160
    assert config.db_path().exists()
