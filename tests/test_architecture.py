"""Import contracts: Qt stays in ui/ and app.py; layers point one way."""

import shutil
import subprocess
import sys
from pathlib import Path

import rlhf_desktop

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Qt stays in ui/ and app.py KEPT" in proc.stdout


def test_core_import_does_not_load_heavy_libraries():
    code = (
        "import sys, rlhf_desktop.cli, rlhf_desktop.services.rewards, rlhf_desktop.storage;"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'llama_cpp', 'PySide6')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120).stdout.strip()
    assert out == "[]", out


def test_modules_stay_small():
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in Path(rlhf_desktop.__file__).parent.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not too_long, too_long
