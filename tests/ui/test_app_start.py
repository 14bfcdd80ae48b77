"""Starting the window where there is no display gives one clear line, not a Qt abort."""

import os
import subprocess
import sys

from rlhf_desktop.app import missing_display


def test_missing_display_is_explained():
    if not sys.platform.startswith("linux"):
        return
    assert missing_display({}) is not None
    assert missing_display({"DISPLAY": ":0"}) is None
    assert missing_display({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert missing_display({"QT_QPA_PLATFORM": "offscreen"}) is None


def test_window_without_display_exits_2_with_a_message(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["RLHF_DESKTOP_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rlhf_desktop"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "no display" in proc.stderr and "--help" in proc.stderr
