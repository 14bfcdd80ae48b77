"""Import contracts: Qt stays in ui/ and app.py; widgets talk to services only; layers point
one way. Each contract is also shown to fail on a module that breaks it."""

import shutil
import subprocess
import sys
from pathlib import Path

import rlhf_desktop

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Qt stays in ui/, runtime/ and app.py KEPT" in proc.stdout


def test_a_widget_importing_storage_breaks_the_contract(tmp_path: Path):
    """A copy of the package with one widget that reaches past the services into storage:
    lint-imports must fail, naming the forbidden import."""
    shutil.copytree(ROOT / "rlhf_desktop", tmp_path / "rlhf_desktop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "rlhf_desktop" / "ui" / "reaches_past.py").write_text(
        "from rlhf_desktop.storage.repo import Repository\n\nREPO = Repository\n")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True, timeout=110,
                          env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert proc.returncode != 0, proc.stdout
    assert "Widgets talk to services only" in proc.stdout and "BROKEN" in proc.stdout
    assert "rlhf_desktop.ui.reaches_past -> rlhf_desktop.storage.repo" in proc.stdout


def test_core_import_does_not_load_heavy_libraries():
    code = (
        "import sys, rlhf_desktop.cli, rlhf_desktop.services.rewards, rlhf_desktop.storage;"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'llama_cpp', 'xllamacpp',"
        " 'PySide6')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120).stdout.strip()
    assert out == "[]", out


# A tripwire, not a style rule: a module may pass a few hundred lines when it is one
# responsibility (splitting a class over mixin files to fit a limit is worse), but one past
# 1,000 lines is doing too much and must be split by responsibility.
MODULE_TRIPWIRE = 1000


def test_no_module_grows_past_the_tripwire():
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in Path(rlhf_desktop.__file__).parent.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MODULE_TRIPWIRE
    }
    assert not too_long, too_long
