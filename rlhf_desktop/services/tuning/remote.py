"""Remote DPO fine-tuning jobs (Azure OpenAI or OpenAI) from the window (Qt-free).

The same machinery as ``rlhf-desktop tune --remote`` (:mod:`rlhf_desktop.tune.remote`):

1. :meth:`RemoteTuning.prepare` exports the pairs as ``openai-dpo`` lines, checks every one
   against the SDK's types, and resolves the account: a :class:`RemoteOffer` whose
   ``question`` names the account and the number of pairs. Nothing is sent.
2. :meth:`RemoteTuning.start` sends exactly those bytes, and only with ``confirmed=True``
   for the account it named (a changed account is refused); the job is recorded in
   ``remote_jobs.json`` and polled into :meth:`RemoteTuning.snapshot` by a job of the
   background runner (the provider's API has no push: polling is the only way to follow).
3. :meth:`RemoteTuning.cancel` cancels the job; once it succeeded, :meth:`RemoteTuning.sources`
   gives the base and the fine-tuned model as candidate sources for a blind A/B.

Network calls never run on the caller's thread; the key is never in a snapshot or a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.services.runner import BackgroundRunner
from rlhf_desktop.tune.remote import (
    ENDED,
    Account,
    RemoteError,
    create_job,
    explain,
    load_jobs,
    make_client,
    record_job,
    resolve_account,
    training_file,
)

log = logging.getLogger(__name__)

__all__ = ["RemoteError", "RemoteOffer", "RemoteSnapshot", "RemoteTuning"]

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"


@dataclass(frozen=True)
class RemoteOffer:
    """What would be sent, and where, before the user confirms."""

    kind: str
    host: str
    pairs: int
    model: str
    data: bytes = field(repr=False)

    @property
    def question(self) -> str:
        """The confirmation to ask, naming the account and the number of pairs."""
        return (f"Send {self.pairs} preference pair{'s' if self.pairs != 1 else ''} to the "
                f"{self.kind} account at {self.host} and start a DPO fine-tuning job on "
                f"{self.model}?")


@dataclass(frozen=True)
class RemoteSnapshot:
    """The newest remote job, for the window."""

    state: str = "idle"
    """``idle``, ``sending``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
    job_id: str = ""
    status: str = ""
    """The service's own status (``validating_files``, ``queued``, ``running``, …)."""
    provider: str = ""
    host: str = ""
    model: str = ""
    fine_tuned_model: str = ""
    pairs: int | None = None
    message: str = ""

    @property
    def active(self) -> bool:
        """Sending, or a job that has not ended."""
        return self.state in ("sending", "running")


def _from_record(record: dict[str, Any]) -> RemoteSnapshot:
    status = str(record.get("status") or "")
    return RemoteSnapshot(
        state=status if status in ENDED else "running", job_id=str(record.get("id", "")),
        status=status, provider=str(record.get("provider") or ""),
        host=str(record.get("endpoint_host") or ""), model=str(record.get("model") or ""),
        fine_tuned_model=str(record.get("fine_tuned_model") or ""), pairs=record.get("pairs"))


class RemoteTuning:
    """Prepare, confirm, start, poll and cancel one remote job at a time."""

    def __init__(self, on_change: Callable[[], None] | None = None,
                 poll_interval_s: float = 15.0,
                 runner: BackgroundRunner | None = None) -> None:
        """``runner``: the session's (default: one of its own, closed by :meth:`close`)."""
        self._on_change = on_change
        self.poll_interval_s = poll_interval_s
        self._own_runner = runner is None
        self._runner = runner if runner is not None else BackgroundRunner()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._working = False
        self._account: Account | None = None
        jobs = load_jobs()
        self._snap = _from_record(jobs[-1]) if jobs else RemoteSnapshot()
        if self._snap.state == "running":
            self._snap = replace(self._snap, message="Check its status to follow it")

    def snapshot(self) -> RemoteSnapshot:
        """The newest job's state (cheap)."""
        with self._lock:
            return self._snap

    def prepare(self, model: str = DEFAULT_MODEL) -> RemoteOffer:
        """The offer to confirm (raises RemoteError with an actionable message; sends
        nothing). Reads the database: call it from a worker thread for a big dataset."""
        model = model.strip()
        if not model:
            raise RemoteError("name the base model to tune, e.g. " + DEFAULT_MODEL)
        account = resolve_account()
        data, pairs = training_file()
        return RemoteOffer(account.kind, account.host, pairs, model, data)

    def start(self, offer: RemoteOffer, confirmed: bool, beta: float = 0.1) -> None:
        """Send ``offer`` and start the job in a worker thread, only if ``confirmed`` for
        the account the offer named. Raises RemoteError (nothing sent) otherwise."""
        if not confirmed:
            raise RemoteError(f"Not sent: {offer.question} was not confirmed")
        if self._busy() or self.snapshot().active:
            raise RemoteError("a remote job is being sent or has not ended yet: wait for it, "
                              "check its status, or cancel it")
        account = resolve_account()
        if (account.kind, account.host) != (offer.kind, offer.host):
            raise RemoteError(f"Not sent: the account is now {account.kind} at "
                              f"{account.host}, not the one you confirmed; ask again")
        with self._lock:
            self._account = account
            self._snap = RemoteSnapshot(state="sending", provider=account.kind,
                                        host=account.host, model=offer.model,
                                        pairs=offer.pairs,
                                        message=f"Uploading {offer.pairs} pairs…")
        self._changed()
        self._run(lambda: self._send_and_follow(account, offer, beta))

    def refresh(self) -> None:
        """Follow the newest job again (after a restart, or to check now)."""
        snap = self.snapshot()
        if not snap.job_id or self._busy():
            return

        def follow() -> None:
            account = resolve_account()
            self._account = account
            self._follow(make_client(account), account, snap.job_id)

        self._run(follow)

    def cancel(self) -> None:
        """Cancel the newest job (a runner job)."""
        snap = self.snapshot()
        if not snap.job_id or snap.state in ENDED:
            return

        def cancel() -> None:
            import openai

            account = self._account or resolve_account()
            try:
                job = make_client(account).fine_tuning.jobs.cancel(snap.job_id)
            except openai.OpenAIError as exc:
                raise explain(exc, account) from None
            record_job(job)
            self._update(job, "Cancel requested")
            self._wake.set()  # the follower polls now instead of at its next interval

        self._runner.run(lambda _job: self._guard(cancel), name="cancel the remote job")

    def sources(self) -> list[CandidateSource]:
        """After success: the base model and the fine-tuned one, one reply each. (On Azure
        the fine-tuned model must be deployed under that name first.)"""
        snap = self.snapshot()
        if snap.state != "succeeded" or not snap.fine_tuned_model:
            raise RemoteError("no remote job has succeeded yet")
        provider = snap.provider or "openai"
        base_model = snap.model if provider == "openai" else ""  # Azure: your deployment
        return [CandidateSource(name=f"base {snap.model}", provider=provider,
                                model=base_model, count=1),
                CandidateSource(name=f"remote {snap.fine_tuned_model}", provider=provider,
                                model=snap.fine_tuned_model, count=1)]

    def close(self) -> None:
        """Stop following (the job itself keeps running remotely)."""
        self._stop.set()
        self._wake.set()
        if self._own_runner:
            self._runner.close()

    # ------------------------------------------------------------------ worker

    def _busy(self) -> bool:
        with self._lock:
            return self._working

    def _run(self, work: Callable[[], None]) -> None:
        self._stop.clear()
        with self._lock:
            self._working = True

        def job(_job: object) -> None:  # the runner's remote-tune lane
            try:
                self._guard(work)
            finally:
                with self._lock:
                    self._working = False

        handle = self._runner.run(job, lane="remote-tune", name="send and follow the job")
        if handle.cancelled:  # the runner was closed: nothing runs
            with self._lock:
                self._working = False

    def _guard(self, work: Callable[[], None]) -> None:
        try:
            work()
        except RemoteError as exc:
            self._set(state="failed" if self.snapshot().state == "sending" else None,
                      message=str(exc))
        except Exception as exc:  # never leave the window waiting on a dead thread
            log.exception("remote tuning failed")
            self._set(state="failed" if self.snapshot().state == "sending" else None,
                      message=f"{type(exc).__name__}: {exc}")

    def _send_and_follow(self, account: Account, offer: RemoteOffer, beta: float) -> None:
        client = make_client(account)
        job = create_job(client, account, offer.data, offer.pairs, offer.model, beta)
        self._update(job, f"Job {job.id} created")
        self._follow(client, account, job.id)

    def _follow(self, client: Any, account: Account, job_id: str) -> None:
        import openai

        while not self._stop.is_set():
            try:
                job = client.fine_tuning.jobs.retrieve(job_id)
            except openai.OpenAIError as exc:
                raise explain(exc, account) from None
            record_job(job)
            self._update(job)
            if job.status in ENDED or self.snapshot().state in ENDED:
                return
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()

    def _update(self, job: Any, message: str = "") -> None:
        status = str(job.status)
        state = status if status in ENDED else "running"
        with self._lock:
            now = self._snap
        if now.job_id == job.id and now.state in ENDED and state not in ENDED:
            return  # a poll answered before the job ended (e.g. before a cancel) came late
        if not message:
            error = getattr(job, "error", None)
            detail = getattr(error, "message", None) if error is not None else None
            message = {"succeeded": f"Done: {job.fine_tuned_model}",
                       "failed": f"The job failed: {detail or 'no reason given'}",
                       "cancelled": "The job was cancelled"}.get(status, f"Job {status}")
        self._set(state=state, job_id=job.id, status=status,
                  fine_tuned_model=job.fine_tuned_model or "", model=job.model,
                  message=message)

    def _set(self, state: str | None = None, **values: Any) -> None:
        with self._lock:
            if state is not None:
                values["state"] = state
            self._snap = replace(self._snap, **values)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("a tuning listener failed")
