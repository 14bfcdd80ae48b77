"""Installing the tune extra from the window (services/tuning/install.py).

The venv has the extra, so a missing one is faked by replacing ``tune_install.find_spec``.
The installer tests run the real child (``python -m pip install`` at nice 19) on a wheel built
here, on a tune requirement with ``--dry-run``, on a requirement that cannot be found, and
against an index that never answers (Cancel); no network is used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from rlhf_desktop.services.tuning import install as tune_install
from rlhf_desktop.services.tuning.install import (
    InstallSnapshot,
    PipProgress,
    TuneInstall,
    check,
    tune_requirements,
)
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

REAL_FIND_SPEC = importlib.util.find_spec

# Captured from pip 26.3: `pip install --target T python-dateutil` from PyPI, a requirement
# that is not there (--no-index), and `--dry-run` of two tune requirements already installed.
PIP_OK = """\
Collecting python-dateutil
  Downloading python_dateutil-4.0.0-py3-none-any.whl (92 kB)
Collecting tzdata (from python-dateutil)
  Downloading tzdata-2026.6-py2.py3-none-any.whl (348 kB)
Installing collected packages: tzdata, python-dateutil
Successfully installed python-dateutil-4.0.0 tzdata-2026.6
"""
PIP_FAIL = """\
ERROR: Could not find a version that satisfies the requirement no-such-package-xyz>=1 (from versions: none)
ERROR: No matching distribution found for no-such-package-xyz>=1
"""  # noqa: E501
PIP_SATISFIED = """\
Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple
Requirement already satisfied: pyyaml>=6 in /work/main/.venv/lib/python3.11/site-packages (6.0.4)
Requirement already satisfied: gguf>=0.19 in /work/main/.venv/lib/python3.11/site-packages (0.19.0)
"""


def fake_missing(monkeypatch: pytest.MonkeyPatch, missing: Callable[[], set[str]]) -> None:
    def find(name: str) -> Any:
        return None if name in missing() else REAL_FIND_SPEC(name)

    monkeypatch.setattr(tune_install, "find_spec", find)


def wait_for(service: TuneInstall, done: Callable[[InstallSnapshot], bool],
             timeout: float = 60) -> InstallSnapshot:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        snap = service.snapshot()
        if done(snap):
            return snap
        time.sleep(0.05)
    raise AssertionError(f"timed out: {service.snapshot()}")


# ---------------------------------------------------------------------- detection


def test_the_venv_has_the_extra() -> None:
    assert check().state == "available"


def test_missing_modules_are_named_and_the_install_is_offered(monkeypatch) -> None:
    fake_missing(monkeypatch, lambda: {"torch", "peft"})
    snap = check(frozen=False)
    assert snap.state == "missing"
    assert snap.missing == ("torch", "peft")
    assert snap.can_install and "torch==2.13.0" in snap.requirements
    assert "torch, peft missing" in snap.message


def test_every_module_a_run_imports_is_looked_for_without_importing_it(monkeypatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(tune_install, "find_spec", lambda name: asked.append(name))
    assert check(frozen=False).missing == tune_install.MODULES
    assert asked == ["torch", "trl", "peft", "transformers", "accelerate", "datasets"]


def test_the_bundle_says_where_tuning_works(monkeypatch) -> None:
    fake_missing(monkeypatch, lambda: {"torch"})
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(REPO_ROOT), raising=False)
    snap = check()
    assert snap.state == "frozen" and not snap.can_install
    assert "chats, ranks and exports" in snap.message
    assert 'pip install "rlhf-desktop[tune]"' in snap.message and "make setup" in snap.message


def test_without_package_metadata_the_command_is_named(monkeypatch) -> None:
    fake_missing(monkeypatch, lambda: {"trl"})
    snap = check(requirements=[], frozen=False)
    assert snap.state == "unavailable" and not snap.can_install
    assert 'pip install "rlhf-desktop[tune]"' in snap.message


# ---------------------------------------------------------------------- requirements


def test_the_requirements_are_the_extra_of_the_installed_metadata() -> None:
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]["tune"]
    read = tune_requirements()
    assert "torch==2.13.0" in read
    assert not any("extra" in r for r in read)
    assert {str(Requirement(r)) for r in read} == {str(Requirement(r)) for r in declared}


def test_other_markers_are_kept_and_other_extras_left_out(monkeypatch) -> None:
    monkeypatch.setattr(importlib.metadata, "requires", lambda dist: [
        "numpy>=1.26", 'qasync>=0.27; extra == "ui"',
        'a>=1; python_version < "3.12" and extra == "tune"', "b==2; extra == 'tune'"])
    assert tune_requirements() == ['a>=1; python_version < "3.12"', "b==2"]


# ---------------------------------------------------------------------- pip's lines


def feed(text: str) -> tuple[PipProgress, list[tuple[int, int, str]]]:
    progress = PipProgress()
    seen = [(progress.step, progress.total, progress.line)
            for line in text.splitlines() if progress.feed(line)]
    return progress, seen


def test_collecting_downloading_installing_are_steps() -> None:
    progress, seen = feed(PIP_OK)
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5, 6]
    assert [s[1] for s in seen] == [4, 4, 6, 6, 6, 6]  # grows as pip finds a dependency
    assert seen[1][2] == "Downloading python_dateutil-4.0.0-py3-none-any.whl (92 kB)"
    assert seen[4][2].startswith("Installing collected packages: tzdata")
    assert progress.done and progress.step == progress.total


def test_already_satisfied_counts_as_collected_and_fetched() -> None:
    progress, seen = feed(PIP_SATISFIED)
    assert progress.packages == ["pyyaml>=6", "gguf>=0.19"]
    assert progress.step == 4 and progress.total == 6 and len(seen) == 2


def test_the_last_error_lines_are_kept() -> None:
    progress, seen = feed("Looking in links: /opt/wheels\n" + PIP_FAIL)
    assert seen == []
    assert progress.errors() == tuple(PIP_FAIL.splitlines())


# ---------------------------------------------------------------------- the real child


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """A wheel of a tiny package, built here with `pip wheel` (no index)."""
    src = tmp_path / "src"
    (src / "tinytune").mkdir(parents=True)
    (src / "tinytune" / "__init__.py").write_text("VALUE = 7\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinytune"\nversion = "0.1"\n')
    out = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index",
                    "--no-build-isolation", "--isolated", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True)
    return next(out.glob("tinytune-0.1-*.whl"))


@pytest.mark.slow
def test_install_runs_pip_and_rechecks(monkeypatch, tmp_path: Path, wheel: Path) -> None:
    target = tmp_path / "target"
    fake_missing(monkeypatch, lambda: set() if (target / "tinytune").exists() else {"trl"})
    changes: list[InstallSnapshot] = []
    service = TuneInstall(lambda: changes.append(service.snapshot()),
                          requirements=[str(wheel)], frozen=False,
                          pip_args=["--isolated", "--no-index", "--no-deps", "--target",
                                    str(target)])
    assert service.check().can_install
    started = service.start()
    assert started.active and started.step == 0
    assert "-c" in service.command([]) and "19" in service.command([])
    snap = wait_for(service, lambda s: not s.active)
    assert snap.state == "available", snap
    assert (target / "tinytune" / "__init__.py").read_text() == "VALUE = 7\n"
    lines = [c.line for c in changes if c.active]
    assert any(line.startswith("Processing") and "tinytune" in line for line in lines)
    assert any(line.startswith("Installing collected packages: tinytune") for line in lines)
    steps = [c.step for c in changes if c.active]
    assert steps == sorted(steps) and steps[-1] >= 3


@pytest.mark.slow
def test_dry_run_of_a_tune_requirement(monkeypatch) -> None:
    """A real requirement from the metadata; pip finds it here, so nothing is fetched. The
    faked module stays missing, so the re-check says so instead of claiming success."""
    fake_missing(monkeypatch, lambda: {"trl"})
    requirement = next(r for r in tune_requirements() if r.startswith("pyyaml"))
    service = TuneInstall(requirements=[requirement], frozen=False,
                          pip_args=["--isolated", "--no-index", "--dry-run", "--no-deps"])
    service.start()
    snap = wait_for(service, lambda s: not s.active)
    assert snap.state == "failed"
    assert "pip finished, but this Python still cannot find trl" in snap.message


def test_a_failed_install_shows_pips_errors_and_can_be_tried_again(monkeypatch) -> None:
    fake_missing(monkeypatch, lambda: {"trl"})
    service = TuneInstall(requirements=["no-such-package-xyz>=1"], frozen=False,
                          pip_args=["--isolated", "--no-index"])
    service.start()
    snap = wait_for(service, lambda s: not s.active)
    assert snap.state == "failed" and snap.message.startswith("pip failed (exit 1)")
    assert snap.errors[-1] == "ERROR: No matching distribution found for no-such-package-xyz>=1"
    again = service.check()  # the panel's re-plan keeps the errors on screen
    assert again.state == "failed" and again.errors == snap.errors and again.can_install


@pytest.fixture
def silent_index() -> Iterator[tuple[str, threading.Event]]:
    """An index that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    asked = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            asked.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple", asked
    server.close()
    for conn in held:
        conn.close()


def test_cancel_kills_pip(monkeypatch, silent_index: tuple[str, threading.Event]) -> None:
    url, asked = silent_index
    fake_missing(monkeypatch, lambda: {"trl"})
    service = TuneInstall(requirements=["six"], frozen=False, pip_args=[
        "--isolated", "--no-cache-dir", "--index-url", url, "--timeout", "100", "--retries", "0"])
    service.start()
    assert asked.wait(60), "pip never asked the index"
    proc = service._proc
    assert proc is not None and proc.poll() is None
    service.cancel()
    snap = wait_for(service, lambda s: not s.active, timeout=10)
    assert snap.state == "cancelled" and snap.can_install
    assert proc.poll() is not None
