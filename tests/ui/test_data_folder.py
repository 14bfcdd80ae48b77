"""One settings resolution: the data folder chosen in the window is the command line's too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_desktop import config
from rlhf_desktop.ui.settings.dialog import SettingsDialog


@pytest.mark.timeout(120)
def test_folder_chosen_in_settings_is_the_one_the_cli_uses(qtbot: object, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    chosen = tmp_path / "my data"
    dialog = SettingsDialog(config.load_settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    dialog.data_dir.setText(str(chosen))
    dialog.accept()
    assert dialog.data_dir_changed
    stored = json.loads(config.location_file().read_text())
    assert stored["data_dir"] == str(chosen.resolve())

    # A fresh command line without --data-dir or RLHF_DESKTOP_HOME: the chosen folder.
    env = {k: v for k, v in os.environ.items() if k != config.HOME_ENV}
    proc = subprocess.run([sys.executable, "-m", "rlhf_desktop", "stats", "--json"], env=env,
                          capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data_dir"] == str(chosen.resolve())
    assert (chosen / config.DB_FILENAME).exists()

    # --data-dir still wins for one run; an unreadable location file falls back to default.
    other = tmp_path / "other"
    proc = subprocess.run([sys.executable, "-m", "rlhf_desktop", "--data-dir", str(other),
                           "stats", "--json"], env=env, capture_output=True, text=True,
                          timeout=90, cwd=tmp_path)
    assert json.loads(proc.stdout)["data_dir"] == str(other.resolve())
    config.location_file().write_text("{not json")
    assert config.remembered_data_dir() is None
