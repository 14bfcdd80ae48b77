"""A local server that speaks OpenAI's and Azure OpenAI's files + fine-tuning jobs protocol.

Real sockets and HTTP/1.1 (the threaded server of :mod:`tests.azure_server`), so the
``openai`` SDK runs exactly as against the real services:

* OpenAI: ``POST /v1/files`` (multipart), ``POST /v1/fine_tuning/jobs``,
  ``GET /v1/fine_tuning/jobs/{id}``, ``POST /v1/fine_tuning/jobs/{id}/cancel`` with
  ``Authorization: Bearer KEY``;
* Azure: the same under ``/openai/...`` with an ``api-key`` header and an ``api-version``
  query (checked against :data:`tests.azure_protocol.SUPPORTED_API_VERSIONS`).

A job moves ``validating_files`` -> ``running`` -> ``succeeded`` one step per retrieve.
``server.fail_create = (status, code, message)`` answers every job creation with that error
(e.g. 429 ``insufficient_quota``). Every request is recorded in ``server.requests``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.azure_protocol import SUPPORTED_API_VERSIONS
from tests.azure_server import LoopbackServer, _Server

STEPS = ("validating_files", "running", "succeeded")


@dataclass
class FtRequest:
    method: str
    path: str


@dataclass
class FtServer(LoopbackServer):
    """The server state; ``start()`` serves in a daemon thread."""

    api_key: str = "test-key"
    requests: list[FtRequest] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_create: tuple[int, str, str] | None = None

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread: threading.Thread | None = None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": "invalid_request_error",
                      "param": None}}


class FtHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FtServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self) -> str | None:
        """The path below the API root, after checking the credentials; None if answered."""
        url = urlsplit(self.path)
        with self.state.lock:
            self.state.requests.append(FtRequest(self.command, url.path))
        if url.path.startswith("/openai/"):
            version = parse_qs(url.query).get("api-version", [""])[0]
            if not version:
                self._send(404, _error("404", "Resource not found"))
                return None
            if version not in SUPPORTED_API_VERSIONS:
                self._send(400, _error("BadRequest", "API version not supported"))
                return None
            if self.headers.get("api-key") != self.state.api_key:
                self._send(401, _error("401", "Access denied due to invalid subscription "
                                              "key or wrong API endpoint."))
                return None
            return url.path[len("/openai"):]
        if url.path.startswith("/v1/"):
            if self.headers.get("Authorization") != f"Bearer {self.state.api_key}":
                self._send(401, _error("invalid_api_key", "Incorrect API key provided."))
                return None
            return url.path[len("/v1"):]
        self._send(404, _error("404", "Resource not found"))
        return None

    def do_GET(self) -> None:
        path = self._route()
        if path is None:
            return
        parts = path.strip("/").split("/")
        if parts[:2] == ["fine_tuning", "jobs"] and len(parts) == 3:
            with self.state.lock:
                job = self.state.jobs.get(parts[2])
                if job is not None and job["status"] in STEPS[:-1]:
                    job["status"] = STEPS[STEPS.index(job["status"]) + 1]
                    if job["status"] == "succeeded":
                        job["fine_tuned_model"] = f"ft:{job['model']}:personal::{job['id'][-8:]}"
                        job["finished_at"] = 1700000100
            if job is None:
                self._send(404, _error("not_found", f"No such job: {parts[2]}"))
            else:
                self._send(200, job)
            return
        self._send(404, _error("404", "Resource not found"))

    def do_POST(self) -> None:
        path = self._route()
        body = self._body()
        if path is None:
            return
        parts = path.strip("/").split("/")
        if parts == ["files"]:
            self._upload(body)
        elif parts == ["fine_tuning", "jobs"]:
            self._create(json.loads(body or b"{}"))
        elif parts[:2] == ["fine_tuning", "jobs"] and len(parts) == 4 and parts[3] == "cancel":
            with self.state.lock:
                job = self.state.jobs.get(parts[2])
                if job is not None and job["status"] not in ("succeeded", "failed"):
                    job["status"] = "cancelled"
            if job is None:
                self._send(404, _error("not_found", f"No such job: {parts[2]}"))
            else:
                self._send(200, job)
        else:
            self._send(404, _error("404", "Resource not found"))

    def _upload(self, body: bytes) -> None:
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = payload
        if fields.get("purpose") != b"fine-tune" or "file" not in fields:
            self._send(400, _error("invalid_request", "need 'file' and purpose 'fine-tune'"))
            return
        for number, line in enumerate(fields["file"].decode().splitlines(), 1):
            record = json.loads(line)
            if not {"input", "preferred_output", "non_preferred_output"} <= set(record):
                self._send(400, _error("invalid_file", f"line {number} is not a DPO line"))
                return
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        with self.state.lock:
            self.state.files[file_id] = fields["file"]
        self._send(200, {"id": file_id, "object": "file", "bytes": len(fields["file"]),
                         "created_at": 1700000000, "filename": "pairs.jsonl",
                         "purpose": "fine-tune", "status": "processed"})

    def _create(self, request: dict[str, Any]) -> None:
        if self.state.fail_create is not None:
            status, code, message = self.state.fail_create
            self._send(status, _error(code, message))
            return
        method = request.get("method") or {}
        if request.get("training_file") not in self.state.files:
            self._send(400, _error("invalid_training_file", "training_file not found"))
            return
        if method.get("type") != "dpo" or "model" not in request:
            self._send(400, _error("invalid_request", "need a model and method type dpo"))
            return
        job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
        job = {"id": job_id, "object": "fine_tuning.job", "created_at": 1700000000,
               "model": request["model"], "training_file": request["training_file"],
               "validation_file": None, "status": "validating_files",
               "fine_tuned_model": None, "finished_at": None, "error": None,
               "hyperparameters": {"n_epochs": "auto"}, "organization_id": "org-test",
               "result_files": [], "seed": 1, "trained_tokens": None, "method": method}
        with self.state.lock:
            self.state.jobs[job_id] = job
        self._send(200, job)


def _make_handler(server: FtServer) -> type[BaseHTTPRequestHandler]:
    return type("BoundFtHandler", (FtHandler,), {"state": server})
