"""The Tune panel offers to install the tune extra when it is missing (ui/model/tune.py).

The extra is faked missing (``tune_install.find_spec``) until the install's target folder has
the package; the install is the real pip child on a wheel built here (see
tests/test_tune_install.py), so the offer, the progress, the success and a failure are real.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.services.tuning import install as tune_install
from rlhf_desktop.services.tuning.install import TuneInstall
from rlhf_desktop.services.tuning.service import TuningService
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.model.tune import TunePanel
from tests.ui.conftest import run
from tests.ui.helpers import db

pytestmark = pytest.mark.timeout(120)
REAL_FIND_SPEC = importlib.util.find_spec


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
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


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where pip installs; trl is "missing" until the package is there."""
    folder = tmp_path / "target"

    def find(name: str) -> Any:
        if name == "trl" and not (folder / "tinytune").exists():
            return None
        return REAL_FIND_SPEC(name)

    monkeypatch.setattr(tune_install, "find_spec", find)
    return folder


@pytest.fixture
def make_panel(qtbot: QtBot, loop: asyncio.AbstractEventLoop, data_home: Path,
               target: Path) -> Iterator[Callable[..., TunePanel]]:
    made: list[tuple[TuningService, Backend]] = []
    db().pairs.add([PreferencePair(prompt=(Message("user", f"question {i}"),),
                                   chosen=f"good {i}", rejected=f"bad {i}") for i in range(3)])

    def make(requirements: list[str], frozen: bool = False) -> TunePanel:
        settings = Settings()
        service = TuningService(data_home, lambda: settings)
        service.fit_check = False  # the measurement child would load the real tokenizer
        service.install = TuneInstall(
            service._changed, requirements=requirements, frozen=frozen,
            pip_args=["--isolated", "--no-index", "--no-deps", "--target", str(target)])
        backend = Backend()
        made.append((service, backend))
        panel = TunePanel(backend, service)
        qtbot.addWidget(panel)
        panel.resize(900, 600)
        panel.show()
        return panel

    yield make
    for service, backend in made:
        service.close()
        run(loop, backend.aclose())


def test_offer_progress_and_success(qtbot: QtBot, make_panel, wheel: Path,
                                    target: Path) -> None:
    panel = make_panel([str(wheel)])
    assert panel.install_box.isVisible()
    assert "trl missing" in panel.install_text.text()
    assert panel.install_button.isVisible() and not panel.install_progress.isVisible()
    assert not panel.tune_button.isEnabled()
    assert "install it above" in panel.plan_label.text()

    seen: list[tuple[int, int, str]] = []

    def record() -> None:
        if panel.install_progress.isVisible():
            seen.append((panel.install_progress.value(), panel.install_progress.maximum(),
                         panel.install_line.text()))

    panel.service.did_progress.append(lambda _snap: record())  # after the panel renders
    qtbot.mouseClick(panel.install_button, Qt.MouseButton.LeftButton)
    assert panel.install_progress.isVisible() and panel.install_cancel.isVisible()
    assert not panel.install_button.isVisible()
    assert panel.plan_label.text().startswith("Installing the tuning packages")
    qtbot.waitUntil(lambda: not panel.install_box.isVisible(), timeout=60_000)
    assert (target / "tinytune").exists()
    assert panel.tune_button.isEnabled()
    assert "install it above" not in panel.plan_label.text()
    assert seen and seen[0][2] == "Starting pip…"
    lines = [line for _, _, line in seen]
    assert any("tinytune" in line for line in lines), lines
    values = [value for value, _, _ in seen]
    assert values == sorted(values)


def test_a_failure_shows_pips_error_and_the_panel_stays_usable(qtbot: QtBot,
                                                                make_panel) -> None:
    panel = make_panel(["no-such-package-xyz>=1"])
    qtbot.mouseClick(panel.install_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.install_errors.isVisible(), timeout=60_000)
    assert "No matching distribution found" in panel.install_errors.text()
    assert panel.install_text.text().startswith("pip failed")
    assert panel.install_button.isVisible() and panel.install_button.isEnabled()
    assert panel.install_button.text() == "Try the install again"
    assert not panel.install_progress.isVisible() and not panel.install_cancel.isVisible()
    assert panel.remote_button.isEnabled()


def test_the_bundle_names_the_command_instead(make_panel) -> None:
    panel = make_panel(["anything"], frozen=True)
    assert panel.install_box.isVisible() and not panel.install_button.isVisible()
    text = panel.install_text.text()
    assert "chats, ranks and exports" in text and 'pip install "rlhf-desktop[tune]"' in text
    assert not panel.tune_button.isEnabled()
