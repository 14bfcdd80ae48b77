"""Shared fixtures. Every test gets its own data folder through RLHF_DESKTOP_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SECRET_VARS = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT_NAME",
    "AZURE_OPENAI_API_VERSION",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "RLHF_DESKTOP_PROVIDER",
)

REPO_ROOT = Path(__file__).resolve().parent.parent
HH_DATA = REPO_ROOT.parent / "shared" / "data" / "hh-harmless-dev.jsonl"


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data folder, no credentials from the developer's shell, and no stray .env."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("RLHF_DESKTOP_HOME", str(home))
    # The remembered data folder (location.json) lives in the user config folder: never
    # the developer's real one.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RLHF_DESKTOP_EMBEDDER_BACKEND", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    # keyring: never touch the developer's real keyring from tests.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    yield home


@pytest.fixture(scope="session")
def hh_data() -> Path:
    """The real human preference pairs in ../shared/data (never copied into the repo)."""
    if not HH_DATA.exists():
        pytest.skip(f"{HH_DATA} is not present")
    return HH_DATA


# ---------------------------------------------------------------------------- test tiers
# `make test` runs everything. `make check` runs `-m "not slow"`: the unit and service tests,
# without torch, llama.cpp, real weights, the window, or subprocess trials (under 60 s).
SLOW_MODULES = {
    "tests/test_reward.py", "tests/test_embedder_backends.py", "tests/test_services.py",
    "tests/test_crash_safety.py", "tests/test_packaging.py", "tests/test_cli.py",
    "tests/test_instances.py", "tests/test_formats.py", "tests/test_fuzz_import.py",
    "tests/test_model_service.py", "tests/test_label_export.py", "tests/test_arena_local.py",
}
SLOW_FOLDERS = ("tests/ui/", "tests/tune/")
HEAVY_LIBRARIES = ("torch", "llama_cpp", "xllamacpp", "sentence_transformers", "transformers",
                   "trl")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the full tier's modules ``slow`` (see SLOW_MODULES)."""
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(REPO_ROOT).as_posix()
        if rel in SLOW_MODULES or rel.startswith(SLOW_FOLDERS):
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The fast tier must stay fast: fail it when a test loaded a heavy library."""
    import sys

    if session.config.getoption("markexpr", "") != "not slow" or exitstatus != 0:
        return
    loaded = [name for name in HEAVY_LIBRARIES if name in sys.modules]
    if loaded:
        print(f"\nmake check loaded {', '.join(loaded)}: mark that test's module slow "
              "(tests/conftest.py SLOW_MODULES)")
        session.exitstatus = 1
