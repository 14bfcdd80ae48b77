"""The window's tuning service (services/tuning/service.py, services/tuning/remote.py).

Local runs: a real child process with the real command line, signals, progress file and
checkpoint folders, scripted instead of trained (``tests/scripted_tune.py``: no torch, so
this module stays in the fast tier); the real run is in tests/ui/test_model_tune.py and
tests/tune/. Remote jobs: the real ``openai`` SDK against the protocol-level server
(``tests/ft_server.py``) over real sockets.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import ConfigError, Settings
from rlhf_desktop.domain import CandidateSource, Message, PreferencePair
from rlhf_desktop.services.arena.service import ArenaService
from rlhf_desktop.services.tuning.remote import RemoteError, RemoteTuning
from rlhf_desktop.services.tuning.service import TuneSnapshot, TuningService
from rlhf_desktop.storage.repo import Repository
from tests.conftest import REPO_ROOT
from tests.ft_server import FtServer

pytestmark = pytest.mark.timeout(90)
SCRIPTED = "tests.scripted_tune"
FAST = {"batch_size": 1, "grad_accum": 1, "max_length": 64, "epochs": 1.0, "pair_budget": 0}
"""One pass, one pair a step: the service's mechanics, not the recipe (tune/options.py)."""
KEY = "sk-test-SECRET-77e1"
MODEL = "gpt-4o-mini-2024-07-18"


def add_pairs(n: int, long_prompts: int = 0) -> None:
    pairs = [PreferencePair(prompt=(Message("user", f"question {i}"),), chosen=f"good {i}",
                            rejected=f"bad {i}") for i in range(n)]
    pairs += [PreferencePair(prompt=(Message("user", "explain at length " * 40 + str(i)),),
                             chosen="ok", rejected="no") for i in range(long_prompts)]
    repo = Repository.open()
    try:
        repo.pairs.add(pairs)
    finally:
        repo.close()


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


class Holder:
    """The session's settings, as ArenaService and TuningService see them."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.applied: list[Settings] = []

    def get(self) -> Settings:
        return self.settings

    def apply(self, settings: Settings) -> None:
        self.settings = settings
        self.applied.append(settings)


@pytest.fixture
def holder() -> Holder:
    return Holder()


@pytest.fixture
def service(data_home: Path, holder: Holder,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[TuningService]:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.05")
    arena = ArenaService(holder.get, holder.apply)
    svc = TuningService(data_home, holder.get, arena, apply=holder.apply, overrides=FAST,
                        module=SCRIPTED)
    yield svc
    svc.close()


def until_state(svc: TuningService, *states: str, timeout: float = 60) -> TuneSnapshot:
    wait_for(lambda: svc.snapshot().state in states, timeout, f"state in {states}")
    return svc.snapshot()


def test_plan_says_what_a_run_takes(service: TuningService) -> None:
    plan = service.plan()
    assert plan.pairs == 0 and "No preference pairs" in (plan.blocker or "")
    assert service.start().state == "preparing"
    snap = until_state(service, "failed")
    assert "no preference pairs" in snap.message
    add_pairs(6)
    plan = service.plan()
    assert plan.blocker is None and plan.pairs == 6 and plan.steps == 6
    assert plan.estimate_s is not None and plan.estimate_s > 0
    assert plan.text().startswith("6 preference pairs, 6 steps, about ")
    assert "measured on 2 idle cores" in plan.text()


def test_a_run_goes_preparing_running_done_in_a_low_priority_child(
        service: TuningService, data_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.3")
    add_pairs(5, long_prompts=1)
    seen = {service.start().state}
    snap = until_state(service, "running")
    assert snap.pid is not None and snap.pid != os.getpid()
    stat = Path(f"/proc/{snap.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[16]) == 19  # nice: the child lowered its own priority
    while snap.state not in ("done", "failed"):
        seen.add(snap.state)
        snap = service.snapshot()
        time.sleep(0.02)
    assert seen >= {"preparing", "running"}
    assert snap.state == "done", snap.message
    assert (snap.step, snap.max_steps) == (5, 5) and snap.fraction == 1.0
    assert snap.loss is not None and snap.accuracy == 0.5 and snap.margin is not None
    assert snap.pairs_total == 6 and snap.pairs_used == 5
    assert [p["line"] for p in snap.left_out] == [6]  # reported, not silently dropped
    assert snap.version == 1 and snap.message == "Chat model v1 is ready"
    assert Path(snap.run_dir).parent == data_home / "tune-runs"
    assert service.versions() == [1]


def test_a_run_publishes_its_progress_on_the_hook_with_nobody_asking(
        service: TuningService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window renders what the service publishes (tune_did_progress); nothing reads
    snapshot() here after the start, so every step seen came through the hook."""
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.1")
    add_pairs(4)
    seen: list[TuneSnapshot] = []
    service.did_progress.append(seen.append)
    service.start()
    wait_for(lambda: seen and seen[-1].state == "done", 60, "the published end of the run")
    states = [snap.state for snap in seen]
    assert states[0] == "preparing" and states[-1] == "done", states
    steps = [snap.step for snap in seen if snap.step is not None]
    assert steps == sorted(steps) and steps[-1] == 4, steps  # as many as were read at once
    assert seen[-1].version == 1 and seen[-1].message == "Chat model v1 is ready"
    count = len(seen)
    service.close()  # the follower ends with the service: nothing more is published
    assert len(seen) == count


def test_cancel_keeps_the_checkpoint_and_resume_continues(
        service: TuningService, monkeypatch: pytest.MonkeyPatch, holder: Holder,
        data_home: Path) -> None:
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.15")
    add_pairs(40)
    service.start()
    wait_for(lambda: (service.snapshot().checkpoint_step or 0) >= 2, what="a checkpoint")
    service.cancel()
    assert service.snapshot().state in ("cancelling", "cancelled")
    snap = until_state(service, "cancelled", "done", "failed")
    assert snap.state == "cancelled", snap.message
    kept = snap.checkpoint_step
    assert kept is not None and 2 <= kept < 40 and snap.can_resume
    assert (Path(snap.run_dir) / "checkpoints" / f"checkpoint-{kept}").is_dir()
    assert f"checkpoint at step {kept} is kept" in snap.message

    # After a restart the window still offers to resume.
    again = TuningService(data_home, holder.get, None, overrides=FAST, module=SCRIPTED)
    assert again.snapshot().state == "cancelled" and again.snapshot().can_resume

    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.01")
    service.resume()
    first_step: list[int] = []
    while (snap := service.snapshot()).state not in ("done", "failed"):
        if snap.step is not None and snap.step > kept and not first_step:
            first_step.append(snap.step)
        time.sleep(0.01)
    assert snap.state == "done" and snap.step == 40 and snap.version == 1
    events = [json.loads(line) for line in (Path(snap.run_dir) / "progress.jsonl").open()]
    training = [e for e in events if e.get("stage") == "training"]
    assert training[-1]["resume_from"].endswith(f"checkpoint-{kept}")
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, kept + 1)) + list(range(kept + 1, 41))
    assert "s a pair in your run v1)" in service.plan().text()  # the estimate learns


def test_a_window_opened_during_a_run_follows_and_cancels_it(
        service: TuningService, holder: Holder, data_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.1")
    add_pairs(200)
    service.start()
    until_state(service, "running")
    other = TuningService(data_home, holder.get, None, overrides=FAST, module=SCRIPTED)
    assert other.snapshot().state == "running"
    assert f"another process (pid {service.snapshot().pid})" in other.snapshot().message
    wait_for(lambda: (other.snapshot().step or 0) >= 1, what="steps seen by the other")
    other.cancel()
    assert until_state(other, "cancelled", "done", "failed").state == "cancelled"
    snap = until_state(service, "cancelled", "done", "failed")
    assert snap.state == "cancelled" and snap.checkpoint_step is not None
    assert other.snapshot().checkpoint_step == snap.checkpoint_step


def test_a_resumed_run_is_followed_by_a_window_opened_meanwhile(
        service: TuningService, holder: Holder, data_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.1")
    add_pairs(200)
    service.start()
    wait_for(lambda: service.snapshot().checkpoint_step, what="a checkpoint")
    service.cancel()
    until_state(service, "cancelled")
    service.resume()
    until_state(service, "running")
    other = TuningService(data_home, holder.get, None, overrides=FAST, module=SCRIPTED)
    assert other.snapshot().state == "running"  # not the first process's "cancelled"
    service.cancel()
    until_state(other, "cancelled")


def test_a_failing_run_says_why(service: TuningService,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_TUNE_FAIL", "no pair fits in max_length 64")
    add_pairs(2)
    service.start()
    snap = until_state(service, "failed", "done")
    assert snap.state == "failed" and snap.message == "no pair fits in max_length 64"
    assert not snap.can_resume


def test_try_it_blind_adds_base_and_tuned_and_turns_the_arena_on(
        service: TuningService, holder: Holder) -> None:
    with pytest.raises(ConfigError, match="no tuned chat-model version"):
        service.offer_ab()
    add_pairs(2)
    service.start()
    snap = until_state(service, "done", "failed")
    assert snap.version == 1, snap.message
    assert not holder.settings.arena
    base, tuned = service.offer_ab()
    assert (base.provider, base.chat_model_version) == ("local", 0)
    assert (tuned.name, tuned.provider, tuned.chat_model_version) == (
        "chat model v1 (tuned)", "local", 1)
    assert holder.settings.arena and holder.settings.sources() == [base, tuned]
    saved = config.load_settings()  # written to the settings file, not only in memory
    assert saved.arena and [s.chat_model_version for s in saved.sources()] == [0, 1]
    service.offer_ab()  # a second offer reuses them
    assert len(holder.settings.sources()) == 2


def test_chat_with_a_version_ends_the_blind_comparison(service: TuningService,
                                                       holder: Holder) -> None:
    """After "Try it blind", choosing a version to chat with means chatting with it: the
    arena goes off (it had kept drawing the replies from base and tuned, blind)."""
    add_pairs(2)
    service.start()
    until_state(service, "done")
    service.offer_ab()
    assert holder.settings.arena
    assert service.chat_line("arena", "Arena · base vs tuned v1").startswith(
        "Your chat compares candidate sources blind")
    assert service.use_version(1) is True
    assert not holder.settings.arena and holder.settings.chat_model_version == 1
    assert len(holder.settings.sources()) == 2  # the sources stay, for a later comparison
    assert service.chat_line("local", "Built-in model · x") == (
        "Your chat uses chat model v1 (tuned).")
    assert service.use_version(0) is False  # no comparison ran
    assert service.chat_line("azure", "Azure OpenAI · gpt-4o") == (
        'The built-in model chats with the base model when you choose it above the chat '
        '("from"); your chat uses Azure OpenAI · gpt-4o now.')


def test_try_it_blind_adds_its_own_base_beside_a_base_at_another_temperature(
        service: TuningService, holder: Holder) -> None:
    """A source of the base model at T 0.3 is not "the base": the tuned version samples at
    the chat's temperature, so the comparison gets a base at the same one."""
    cool = CandidateSource("cool", provider="local", temperature=0.3, count=1)
    holder.settings = replace(holder.settings, candidate_sources=[cool.to_dict()])
    add_pairs(2)
    service.start()
    assert until_state(service, "done", "failed").version == 1
    base, tuned = service.offer_ab()
    assert base.name != "cool" and base.temperature is None and tuned.temperature is None
    assert [s.name for s in holder.settings.sources()] == [
        "cool", base.name, "chat model v1 (tuned)"]


def test_a_cancel_during_the_last_step_says_why_the_run_finished_anyway(
        service: TuningService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mark = tmp_path / "step-under-way"
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "1.5")
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_MARK", str(mark))
    add_pairs(1)  # one step: a cancel while it runs stops after it, i.e. at the end
    service.start()
    until_state(service, "running")
    # "running" comes with the training stage, just before the step; a cancel landing in
    # between (a starved child under load) rightly stops before any step, so wait for it
    wait_for(mark.exists, 60, "the step under way")
    service.cancel()
    snap = until_state(service, "done", "cancelled", "failed")
    assert snap.state == "done" and snap.version == 1, snap.message
    assert snap.message == ("Chat model v1 is ready (the cancel came during the last step, "
                            "so the run finished)")


def test_use_version_switches_the_built_in_model(service: TuningService,
                                                 holder: Holder) -> None:
    add_pairs(1)
    service.start()
    until_state(service, "done")
    assert service.chosen_version() == 0
    service.use_version(1)
    assert service.chosen_version() == 1 and config.load_settings().chat_model_version == 1
    service.use_version(0)  # rollback: the base again
    assert holder.settings.chat_model_version == 0


# ---------------------------------------------------------------------------- remote


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[FtServer]:
    with FtServer(api_key=KEY) as server:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.endpoint)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
        monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "chat")
        monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-03-01-preview")
        yield server


def until_remote(remote: RemoteTuning, *states: str) -> None:
    wait_for(lambda: remote.snapshot().state in states, 30, f"remote state in {states}")


def test_remote_job_needs_confirmation_then_succeeds_and_is_offered_blind(
        azure: FtServer, service: TuningService, holder: Holder) -> None:
    remote = service.remote
    remote.poll_interval_s = 0.05
    add_pairs(3)
    offer = remote.prepare(MODEL)
    host = f"127.0.0.1:{azure.port}"
    assert offer.question == (f"Send 3 preference pairs to the azure account at {host} and "
                              f"start a DPO fine-tuning job on {MODEL}?")
    with pytest.raises(RemoteError, match="was not confirmed"):
        remote.start(offer, confirmed=False)
    assert azure.requests == [] and remote.snapshot().state == "idle"

    remote.start(offer, confirmed=True)
    until_remote(remote, "succeeded", "failed")
    snap = remote.snapshot()
    assert snap.state == "succeeded", snap.message
    (job,) = azure.jobs.values()
    assert snap.job_id == job["id"] and snap.fine_tuned_model == job["fine_tuned_model"]
    assert (snap.provider, snap.host, snap.pairs) == ("azure", host, 3)
    (uploaded,) = azure.files.values()
    assert uploaded == offer.data and len(uploaded.decode().splitlines()) == 3
    assert KEY not in repr(snap) and KEY not in repr(offer)
    base, tuned = service.offer_remote_ab()
    assert (tuned.provider, tuned.model) == ("azure", job["fine_tuned_model"])
    assert base.provider == "azure" and holder.settings.arena
    # After a restart the job is shown from its record.
    assert RemoteTuning().snapshot().fine_tuned_model == job["fine_tuned_model"]


def test_remote_quota_429_fails_with_the_reason(azure: FtServer,
                                                service: TuningService) -> None:
    add_pairs(1)
    azure.fail_create = (429, "insufficient_quota", "You exceeded your current quota.")
    remote = service.remote
    remote.start(remote.prepare(MODEL), confirmed=True)
    until_remote(remote, "failed", "succeeded")
    message = remote.snapshot().message
    assert "quota or rate limit (429)" in message and "exceeded your current quota" in message
    assert azure.jobs == {}


def test_remote_bad_line_sends_nothing(azure: FtServer, service: TuningService) -> None:
    add_pairs(1)
    repo = Repository.open()
    repo.pairs.add([PreferencePair(prompt=(Message("user", "q"), Message("assistant", "x")),
                                   chosen="a", rejected="b")])
    repo.close()
    with pytest.raises(RemoteError, match=r"pair 2 of 2 cannot be sent.*nothing was sent"):
        service.remote.prepare(MODEL)
    assert azure.requests == []


def test_remote_cancel(azure: FtServer, service: TuningService) -> None:
    add_pairs(2)
    remote = service.remote
    remote.poll_interval_s = 30  # the job stays running until cancelled
    remote.start(remote.prepare(MODEL), confirmed=True)
    wait_for(lambda: remote.snapshot().job_id, 30, "the job")
    remote.cancel()
    until_remote(remote, "cancelled")
    (job,) = azure.jobs.values()
    assert job["status"] == "cancelled"
    records = json.loads((config.data_dir() / "remote_jobs.json").read_text())
    assert records[-1]["status"] == "cancelled"


def test_a_late_poll_does_not_undo_an_ended_job(data_home: Path) -> None:
    from types import SimpleNamespace

    remote = RemoteTuning()

    def job(status: str) -> SimpleNamespace:
        return SimpleNamespace(id="ftjob-1", status=status, fine_tuned_model=None,
                               model=MODEL, error=None)

    remote._update(job("running"))
    remote._update(job("cancelled"), "Cancel requested")
    remote._update(job("running"))  # answered before the cancel, applied after it
    assert remote.snapshot().state == "cancelled"


def test_remote_refuses_when_the_account_changed(azure: FtServer, service: TuningService,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    add_pairs(1)
    offer = service.remote.prepare(MODEL)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.2:9/")
    with pytest.raises(RemoteError, match="not the one you confirmed"):
        service.remote.start(replace(offer), confirmed=True)
    assert azure.requests == []


def test_remote_without_an_account_says_what_to_set(service: TuningService) -> None:
    add_pairs(1)
    with pytest.raises(RemoteError, match=r"AZURE_OPENAI_ENDPOINT.*OPENAI_API_KEY"):
        service.remote.prepare(MODEL)


def test_a_session_publishes_the_tune_on_its_hook_on_the_event_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """AppSession's tuning fires the session's tune_did_progress on the session's loop (the
    thread the window's widgets live on), as the other hooks are fired."""
    import asyncio
    import threading

    from rlhf_desktop.services.session import AppSession
    from tests.fakes import FakeProvider, HashEmbedder

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.05")
    add_pairs(3)
    seen: list[tuple[str, bool]] = []

    async def scenario() -> None:
        session = AppSession(Settings(), FakeProvider(),  # type: ignore[arg-type]
                             embedder=HashEmbedder())
        session.hooks.tune_did_progress.append(lambda snap: seen.append(
            (snap.state, threading.current_thread() is threading.main_thread())))
        tuning = TuningService.for_session(session, overrides=FAST, module=SCRIPTED)
        try:
            assert tuning.did_progress is session.hooks.tune_did_progress
            tuning.start()
            deadline = time.monotonic() + 60
            while not (seen and seen[-1][0] == "done"):
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.05)
        finally:
            tuning.close()
            await session.aclose()

    asyncio.run(scenario())
    assert seen[-1][0] == "done" and all(on_loop for _, on_loop in seen), seen
