"""``rlhf-desktop tune --remote``: a DPO fine-tuning job on Azure OpenAI or OpenAI.

The stored pairs are exported as ``openai-dpo`` lines and every line is checked with
:func:`~rlhf_desktop.providers.openai_dpo.validate_openai_dpo` before anything is sent. The
account comes from the provider resolution (:func:`rlhf_desktop.providers.select.resolve`);
nothing is uploaded without a confirmation naming the endpoint's host and the number of
pairs (a ``y/N`` prompt on a terminal, or ``--yes``). The key is read only to build the
client and never printed. Jobs are recorded in ``<data>/remote_jobs.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

JOBS_FILE = "remote_jobs.json"
ENDED = ("succeeded", "failed", "cancelled")
OPENAI_HOST = "api.openai.com"


class RemoteError(Exception):
    """A clear, actionable failure (printed as ``rlhf-desktop: error: ...``)."""


@dataclass(frozen=True)
class Account:
    """Where the job goes (no key)."""

    kind: str
    endpoint: str
    api_version: str
    key_name: str

    @property
    def host(self) -> str:
        if not self.endpoint:
            return OPENAI_HOST
        return urlsplit(self.endpoint).netloc or self.endpoint


def resolve_account() -> Account:
    """The configured Azure OpenAI resource or OpenAI account."""
    from rlhf_desktop import config
    from rlhf_desktop.providers.errors import ProviderConfigError
    from rlhf_desktop.providers.select import AZURE_KEY, OPENAI_KEY, resolve

    keys = bool(config.get_secret(AZURE_KEY) or config.get_secret(OPENAI_KEY))
    try:
        choice = resolve() if keys else None
    except ProviderConfigError as exc:
        raise RemoteError(str(exc)) from None
    if choice is None or choice.kind == "local" or not choice.has_key:
        raise RemoteError(
            "remote tuning needs an Azure OpenAI resource (AZURE_OPENAI_ENDPOINT, "
            "AZURE_OPENAI_API_KEY, AZURE_OPENAI_DEPLOYMENT_NAME) or an OpenAI key "
            "(OPENAI_API_KEY); set them in the environment or .env, or in Settings")
    return Account(kind=choice.kind, endpoint=choice.endpoint,
                   api_version=choice.api_version, key_name=choice.key_name)


def _key(account: Account) -> str:
    from rlhf_desktop import config

    key = config.get_secret(account.key_name)
    if not key:
        raise RemoteError(f"{account.key_name} is not set")
    return key


def make_client(account: Account) -> Any:
    """An ``openai`` client for the account (the SDK is imported here, lazily)."""
    import openai

    key = _key(account)
    if account.kind == "azure":
        return openai.AzureOpenAI(azure_endpoint=account.endpoint, api_key=key,
                                  api_version=account.api_version, max_retries=1)
    return openai.OpenAI(api_key=key, base_url=account.endpoint or None, max_retries=1)


def training_file() -> tuple[bytes, int]:
    """The stored pairs as ``openai-dpo`` JSONL, every line validated; (bytes, pairs)."""
    from rlhf_desktop.core.formats import FormatError, export_lines
    from rlhf_desktop.providers.openai_dpo import validate_openai_dpo
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    try:
        lines = list(export_lines(repo.pairs.stream(), "openai-dpo"))
    finally:
        repo.close()
    for number, line in enumerate(lines, 1):
        try:
            validate_openai_dpo(json.loads(line))
        except FormatError as exc:
            raise RemoteError(f"pair {number} of {len(lines)} cannot be sent: {exc}. Fix or "
                              "delete it on the dataset page; nothing was sent") from None
    if not lines:
        raise RemoteError("there are no preference pairs to tune on yet: pick replies in "
                          "the chat, or `rlhf-desktop import FILE`")
    return "".join(lines).encode("utf-8"), len(lines)


def explain(exc: Exception, account: Account) -> RemoteError:
    """The SDK's error as an actionable message (the key is never part of it)."""
    import openai

    detail = getattr(exc, "message", None) or str(exc)
    try:
        detail = detail.replace(_key(account), "***")
    except RemoteError:
        pass
    if isinstance(exc, openai.AuthenticationError):
        return RemoteError(f"{account.host} rejected the key ({account.key_name}): check "
                           f"it, and that it belongs to this endpoint. ({detail})")
    if isinstance(exc, openai.PermissionDeniedError):
        return RemoteError(f"{account.host} denied access (403): the key ({account.key_name}) "
                           f"may not allow fine-tuning. ({detail})")
    if isinstance(exc, openai.RateLimitError):
        return RemoteError(f"{account.host} refused for quota or rate limit (429): {detail}. "
                           "Check the account's fine-tuning quota and billing, or retry later")
    if isinstance(exc, openai.NotFoundError):
        return RemoteError(f"not found on {account.host} (404): {detail}. Check the endpoint"
                           ", the API version and the job id")
    if isinstance(exc, openai.APIConnectionError):
        return RemoteError(f"cannot reach {account.host}: {detail}")
    if isinstance(exc, openai.APIStatusError):
        return RemoteError(f"{account.host} answered {exc.status_code}: {detail}")
    return RemoteError(detail)


# ---------------------------------------------------------------------- job records

def _jobs_path() -> Any:
    from rlhf_desktop import config

    return config.data_dir() / JOBS_FILE


def load_jobs() -> list[dict[str, Any]]:
    path = _jobs_path()
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


_RECORDS = threading.Lock()
"""One read-modify-write of ``remote_jobs.json`` at a time (the follower and a cancel run in
different threads)."""


def record_job(job: Any, account: Account | None = None, pairs: int | None = None) -> None:
    """Add or update a job's record."""
    with _RECORDS:
        _record_job(job, account, pairs)


def _record_job(job: Any, account: Account | None, pairs: int | None) -> None:
    from rlhf_desktop import config

    jobs = load_jobs()
    entry = next((j for j in jobs if j.get("id") == job.id), None)
    if entry is None:
        if account is None:
            return
        entry = {"id": job.id, "provider": account.kind, "endpoint_host": account.host,
                 "model": job.model, "pairs": pairs,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                          time.gmtime(job.created_at or time.time()))}
        jobs.append(entry)
    if entry.get("status") in ENDED and job.status not in ENDED:
        return  # a poll answered before the job ended (e.g. before a cancel) came late
    entry["status"] = job.status
    entry["fine_tuned_model"] = job.fine_tuned_model
    config.atomic_write_bytes(_jobs_path(), json.dumps(jobs, indent=1).encode("utf-8"))


def create_job(client: Any, account: Account, data: bytes, pairs: int, model: str,
               beta: float = 0.1, uploaded: Any = None) -> Any:
    """Upload the validated ``openai-dpo`` lines and create the DPO job; record it.
    Call only after the user confirmed the account and the number of pairs."""
    import openai

    try:
        file = client.files.create(file=("pairs.jsonl", data, "application/jsonl"),
                                   purpose="fine-tune")
        if uploaded is not None:
            uploaded(file.id)
        job = client.fine_tuning.jobs.create(
            model=model, training_file=file.id,
            method={"type": "dpo", "dpo": {"hyperparameters": {"beta": beta}}})
    except openai.OpenAIError as exc:
        raise explain(exc, account) from None
    record_job(job, account, pairs)
    return job


# ---------------------------------------------------------------------- the command

def _confirm(account: Account, pairs: int, model: str, assume_yes: bool) -> bool:
    question = (f"Send {pairs} preference pair{'s' if pairs != 1 else ''} to the "
                f"{account.kind} account at {account.host} and start a DPO fine-tuning job "
                f"on {model}?")
    if assume_yes:
        print(f"{question} yes (--yes)", file=sys.stderr)
        return True
    if not sys.stdin.isatty():
        raise RemoteError(f"{question} Not sent: confirmation needed; run it on a terminal "
                          "to answer y/N, or add --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _print_job(job: Any) -> None:
    line = f"job {job.id}: {job.status}"
    if job.fine_tuned_model:
        line += f" · model {job.fine_tuned_model}"
    error = getattr(job, "error", None)
    if job.status == "failed" and error is not None and getattr(error, "message", None):
        line += f" · {error.message}"
    print(line, flush=True)


def _print_usage(job: Any, account: Account) -> None:
    name = job.fine_tuned_model
    if account.kind == "azure":
        print(f"tuned model {name}: deploy it on {account.host} (Azure portal or CLI), then "
              "chat with it: AZURE_OPENAI_DEPLOYMENT_NAME=<that deployment>")
    else:
        print(f"tuned model {name}: chat with it: OPENAI_MODEL={name}")


def follow(client: Any, account: Account, job_id: str, interval: float) -> int:
    """Poll until the job ends; 0 succeeded, 1 failed, 3 cancelled."""
    import openai

    last = ""
    while True:
        try:
            job = client.fine_tuning.jobs.retrieve(job_id)
        except openai.OpenAIError as exc:
            raise explain(exc, account) from None
        record_job(job)
        if job.status != last:
            _print_job(job)
            last = job.status
        if job.status in ENDED:
            if job.status == "succeeded":
                _print_usage(job, account)
                return 0
            return 1 if job.status == "failed" else 3
        time.sleep(interval)


def run_remote(args: argparse.Namespace) -> int:
    """``tune --remote`` (0 done, 1 the job failed, 2 error, 3 cancelled)."""
    try:
        return _run(args)
    except RemoteError as exc:
        print(f"rlhf-desktop: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import openai

    if args.list:
        return _list(args.json)
    account = resolve_account()
    interval = float(args.poll_interval)
    if args.status or args.cancel:
        client = make_client(account)
        job_id = args.status or args.cancel
        try:
            if args.cancel:
                job = client.fine_tuning.jobs.cancel(job_id)
            else:
                job = client.fine_tuning.jobs.retrieve(job_id)
        except openai.OpenAIError as exc:
            raise explain(exc, account) from None
        record_job(job)
        _print_job(job)
        if job.status == "succeeded":
            _print_usage(job, account)
        return 0
    if not args.model:
        raise RemoteError("--model is required with --remote: the base model to tune, e.g. "
                          "gpt-4o-mini-2024-07-18")
    data, pairs = training_file()
    if not _confirm(account, pairs, args.model, args.yes):
        print("not sent", file=sys.stderr)
        return 2
    client = make_client(account)
    beta = 0.1 if args.beta is None else float(args.beta)
    job = create_job(client, account, data, pairs, args.model, beta,
                     lambda file_id: print(f"uploaded {pairs} pairs as {file_id}",
                                           file=sys.stderr))
    _print_job(job)
    if args.no_wait:
        print(f"follow it with `rlhf-desktop tune --remote --status {job.id}`",
              file=sys.stderr)
        return 0
    try:
        return follow(client, account, job.id, interval)
    except KeyboardInterrupt:
        print(f"\nstopped watching; the job keeps running on {account.host}: "
              f"`rlhf-desktop tune --remote --status {job.id}` or --cancel {job.id}",
              file=sys.stderr)
        return 3


def _list(as_json: bool) -> int:
    jobs = load_jobs()
    if as_json:
        print(json.dumps(jobs, ensure_ascii=False))
        return 0
    if not jobs:
        print("no remote tuning jobs yet")
    for j in jobs:
        model = f" → {j['fine_tuned_model']}" if j.get("fine_tuned_model") else ""
        print(f"{j.get('id')}  {j.get('created', '')}  {j.get('provider')}@"
              f"{j.get('endpoint_host')}  {j.get('model')}  {j.get('pairs')} pairs  "
              f"{j.get('status')}{model}")
    return 0
