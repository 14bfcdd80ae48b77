"""``rlhf-desktop tune --remote`` against a protocol-level files + fine-tuning jobs server.

Real sockets, the real ``openai`` SDK, the real CLI (in-process via ``cli.main``, and once
as a subprocess for the confirmation refusal).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlhf_desktop import cli
from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.storage.repo import Repository
from tests.ft_server import FtServer

KEY = "sk-test-SECRET-5d1f0e9a"
MODEL = "gpt-4o-mini-2024-07-18"
pytestmark = pytest.mark.timeout(60)


def _add_pairs(pairs: list[PreferencePair]) -> None:
    repo = Repository.open()
    try:
        repo.pairs.add(pairs)
    finally:
        repo.close()


def _good(n: int) -> list[PreferencePair]:
    return [PreferencePair(prompt=(Message("user", f"question {i}"),), chosen=f"good {i}",
                           rejected=f"bad {i}") for i in range(n)]


@pytest.fixture
def server() -> Iterator[FtServer]:
    with FtServer(api_key=KEY) as s:
        yield s


@pytest.fixture
def azure(server: FtServer, monkeypatch: pytest.MonkeyPatch) -> FtServer:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.endpoint)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "chat")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-03-01-preview")
    return server


@pytest.fixture
def openai_account(server: FtServer, monkeypatch: pytest.MonkeyPatch) -> FtServer:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    return server


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["tune", "--remote", *args])
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return code, out, err


def test_azure_job_succeeds_and_is_recorded(azure: FtServer, data_home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs(_good(3))
    code, out, err = _run(capsys, "--model", MODEL, "--yes", "--poll-interval", "0.05")
    assert code == 0, err
    host = f"127.0.0.1:{azure.port}"
    assert f"Send 3 preference pairs to the azure account at {host}" in err
    assert "validating_files" in out and "running" in out and "succeeded" in out
    (job,) = azure.jobs.values()
    assert job["method"] == {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}
    assert job["fine_tuned_model"] in out
    assert "AZURE_OPENAI_DEPLOYMENT_NAME" in out
    (uploaded,) = azure.files.values()
    lines = [json.loads(line) for line in uploaded.decode().splitlines()]
    assert len(lines) == 3 and lines[0]["preferred_output"][0]["content"] == "good 0"
    assert all(r.path.startswith("/openai/") for r in azure.requests)
    records = json.loads((data_home / "remote_jobs.json").read_text())
    assert records == [{"id": job["id"], "provider": "azure", "endpoint_host": host,
                        "model": MODEL, "pairs": 3, "created": records[0]["created"],
                        "status": "succeeded", "fine_tuned_model": job["fine_tuned_model"]}]
    assert KEY not in (data_home / "remote_jobs.json").read_text()
    code, out, _ = _run(capsys, "--list")
    assert code == 0 and job["id"] in out and job["fine_tuned_model"] in out


def test_openai_job_no_wait_then_status(openai_account: FtServer,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs(_good(2))
    code, out, err = _run(capsys, "--model", MODEL, "--yes", "--no-wait")
    assert code == 0, err
    (job_id,) = openai_account.jobs
    assert "validating_files" in out and "--status" in err
    assert all(r.path.startswith("/v1/") for r in openai_account.requests)
    for _ in range(2):
        code, out, _ = _run(capsys, "--status", job_id)
    assert code == 0 and "succeeded" in out and "OPENAI_MODEL=ft:" in out


def test_bad_line_sends_nothing(azure: FtServer, capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs([*_good(2), PreferencePair(
        prompt=(Message("user", "q"), Message("assistant", "x")), chosen="a", rejected="b")])
    code, _, err = _run(capsys, "--model", MODEL, "--yes")
    assert code == 2
    assert "pair 3 of 3 cannot be sent" in err and "must end with the user's turn" in err
    assert "nothing was sent" in err
    assert azure.requests == []


def test_quota_429_on_job_creation(azure: FtServer, data_home: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs(_good(1))
    azure.fail_create = (429, "insufficient_quota", "You exceeded your current quota.")
    code, _, err = _run(capsys, "--model", MODEL, "--yes", "--poll-interval", "0.05")
    assert code == 2
    assert "quota or rate limit (429)" in err and "exceeded your current quota" in err
    assert azure.jobs == {} and not (data_home / "remote_jobs.json").exists()


def test_wrong_key_names_the_variable(azure: FtServer, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs(_good(1))
    azure.api_key = "another-key"
    code, _, err = _run(capsys, "--model", MODEL, "--yes")
    assert code == 2 and "AZURE_OPENAI_API_KEY" in err and "rejected the key" in err


def test_cancel(azure: FtServer, data_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs(_good(2))
    assert _run(capsys, "--model", MODEL, "--yes", "--no-wait")[0] == 0
    (job_id,) = azure.jobs
    code, out, _ = _run(capsys, "--cancel", job_id)
    assert code == 0 and f"job {job_id}: cancelled" in out
    assert azure.jobs[job_id]["status"] == "cancelled"
    assert json.loads((data_home / "remote_jobs.json").read_text())[0]["status"] == "cancelled"


def test_refuses_without_confirmation(azure: FtServer, data_home: Path) -> None:
    _add_pairs(_good(4))
    env = {**os.environ, "RLHF_DESKTOP_HOME": str(data_home)}
    done = subprocess.run([sys.executable, "-m", "rlhf_desktop", "tune", "--remote",
                           "--model", MODEL], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"Send 4 preference pairs to the azure account at 127.0.0.1:{azure.port}" in \
        done.stderr
    assert "confirmation needed" in done.stderr and "--yes" in done.stderr
    assert KEY not in done.stdout + done.stderr
    assert azure.requests == []


def test_needs_an_account(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--model", MODEL, "--yes")
    assert code == 2 and "OPENAI_API_KEY" in err and "AZURE_OPENAI_ENDPOINT" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", ["n", "y"])
def test_terminal_prompt(azure: FtServer, answer: str, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs(_good(2))
    monkeypatch.setattr(sys, "stdin", _Terminal(answer + "\n"))
    code, out, err = _run(capsys, "--model", MODEL, "--no-wait")
    assert f"Send 2 preference pairs to the azure account at 127.0.0.1:{azure.port}" in out
    assert "[y/N]" in out
    if answer == "n":
        assert code == 2 and "not sent" in err and azure.requests == []
    else:
        assert code == 0 and len(azure.jobs) == 1


def test_key_echoed_by_the_server_is_masked(azure: FtServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _add_pairs(_good(1))
    azure.fail_create = (400, "invalid_request", f"the key {KEY} may not tune")
    code, _, err = _run(capsys, "--model", MODEL, "--yes")
    assert code == 2 and "the key *** may not tune" in err and "answered 400" in err


def test_a_late_poll_never_reopens_an_ended_job_record(data_home: Path) -> None:
    """A status read before a cancel but recorded after it must not turn the job's record
    back to running (the window's poll and its Cancel run in different threads)."""
    from types import SimpleNamespace

    from rlhf_desktop.tune.remote import Account, load_jobs, record_job

    def job(status: str) -> SimpleNamespace:
        return SimpleNamespace(id="ftjob-1", status=status, fine_tuned_model=None,
                               model="gpt-4o-mini", created_at=0)

    record_job(job("running"), Account("openai", "", "", "OPENAI_API_KEY"), pairs=3)
    record_job(job("cancelled"))
    record_job(job("running"))  # answered before the cancel, written after it
    assert [j["status"] for j in load_jobs()] == ["cancelled"]
