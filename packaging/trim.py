"""What the bundle leaves out, as named rules; used by ``rlhf-desktop.spec``.

Each rule is measured: the spec records the bytes every rule removed in
``build/rlhf-desktop/trim-report.json`` (``RLHF_PACKAGE_TRIM=0`` builds without any rule,
for the untrimmed baseline).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Entry = tuple[str, str, str]  # PyInstaller TOC entry: (destination, source, type code)
Rule = Callable[[str], bool]

# Python packages that are installed in the development venv (test tools, the ``datasets``
# stack of the test extra) but that the app never needs; sentence-transformers and
# transformers import them only when present.
EXCLUDED_MODULES: dict[str, tuple[str, ...]] = {
    "datasets stack (test extra only)": (
        "datasets", "pyarrow", "pandas", "multiprocess", "dill", "xxhash", "aiohttp",
        "fsspec.implementations.arrow",
    ),
    "test and dev tools": (
        "pytest", "_pytest", "pytestqt", "hypothesis", "mypy", "mypyc", "importlinter",
        "grimp", "ruff", "IPython", "jedi", "tkinter", "_tkinter", "matplotlib",
        "tensorboard", "torch.utils.tensorboard", "ast_serialize", "librt",
    ),
    "Hugging Face download backend (the app never downloads)": ("hf_xet",),
    # The app calls scikit-learn's LogisticRegression (core/bradley_terry.py) and SciPy's
    # stats, optimize and special; none of these loads the subpackages below (the import
    # trace of every app module, the self-test's lazy modules and those calls:
    # tests/test_packaging.py runs them with these names blocked). PyInstaller's analysis
    # reaches them only through imports inside functions the app never calls.
    "scikit-learn and SciPy subpackages the app never loads": (
        "sklearn.cluster", "sklearn.neighbors", "sklearn.tree", "sklearn.decomposition",
        "sklearn.manifold", "sklearn.gaussian_process", "sklearn.covariance",
        "scipy.cluster",
    ),
    "setuptools (a build tool; the app never imports it)": ("setuptools", "pkg_resources"),
    "the tune extra (rlhf-desktop tune runs from a development install; README)": (
        "trl", "peft", "accelerate", "deepspeed", "gguf", "sentencepiece",
    ),
    "Qt modules the app does not use": (
        "PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets", "PySide6.QtWebEngineQuick",
        "PySide6.QtWebChannel", "PySide6.QtWebSockets", "PySide6.QtQuick",
        "PySide6.QtQuickWidgets", "PySide6.QtQuick3D", "PySide6.QtQml", "PySide6.Qt3DCore",
        "PySide6.Qt3DRender", "PySide6.Qt3DExtras", "PySide6.Qt3DInput", "PySide6.Qt3DLogic",
        "PySide6.Qt3DAnimation", "PySide6.QtMultimedia", "PySide6.QtMultimediaWidgets",
        "PySide6.QtPdf", "PySide6.QtPdfWidgets", "PySide6.QtDataVisualization",
        "PySide6.QtGraphs", "PySide6.QtGraphsWidgets", "PySide6.QtBluetooth",
        "PySide6.QtNfc", "PySide6.QtPositioning", "PySide6.QtLocation",
        "PySide6.QtSensors", "PySide6.QtSerialPort", "PySide6.QtSerialBus",
        "PySide6.QtSql", "PySide6.QtTest", "PySide6.QtDesigner", "PySide6.QtHelp",
        "PySide6.QtRemoteObjects", "PySide6.QtScxml", "PySide6.QtSpatialAudio",
        "PySide6.QtTextToSpeech", "PySide6.QtHttpServer", "PySide6.QtUiTools",
        # Python bindings that hooks add although the app imports none of them (the C++
        # libraries that QtCharts or the platform plugins link stay, found as their needs).
        "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtNetwork", "PySide6.QtDBus",
    ),
}

# Left out unless ``RLHF_PACKAGE_TORCH=1``: torch and the libraries that need it. The window,
# chat, ranking (the numpy MiniLM runner) and the self-test do not import them; tuning and
# transformers rankers do, and stay available from a development install.
TORCH_STACK: tuple[str, ...] = (
    "torch", "torchgen", "functorch", "transformers", "sentence_transformers", "trl", "peft",
    "accelerate", "datasets", "kernels", "safetensors.torch",
)

GTK_THEME_RULE = "Qt's gtk3 platform theme plugin"
ORPHANS_RULE = "libraries that only the removed files needed (GTK, Pango, cairo, ATK ...)"
STRIP_RULE = ("debug info and symbol tables stripped from ELF files (strip --strip-unneeded; "
              "the dynamic symbols the loader uses stay)")
STRIP_KEPT_RULE = ("ELF files left unstripped: strip would change their loadable segments "
                   "(patchelf-rewritten libraries; nothing saved)")
DEDUPE_RULE = "identical files stored once (the copies become relative symbolic links)"
HALF_RULE = "MiniLM weights stored as float16 (the numpy runner computes in float32)"

_VERSIONED_SO = re.compile(r"\.so\.\d+\.\d+(\.\d+)*$")


def _glob(*patterns: str) -> Rule:
    def match(dest: str) -> bool:
        path = dest.replace("\\", "/")
        return any(fnmatch.fnmatch(path, p) for p in patterns)

    return match


def _torch_extra(dest: str) -> bool:
    """torch's C++ headers, CMake files, static libraries and test programs.

    ``torch/bin/torch_shm_manager`` stays: ``import torch`` checks that it exists.
    """
    path = dest.replace("\\", "/")
    if path == "torch/bin/torch_shm_manager":
        return False
    return _TORCH_EXTRA(path)


_TORCH_EXTRA = _glob(
    "torch/include/*", "torch/share/*", "torch/bin/*", "torch/test/*", "*.a",
    "torch/lib/*test*.so*", "torch/lib/libbackend_with_compiler.so",
    "torch/lib/libaoti_custom_ops.so", "torch/lib/libjitbackend_test.so",
    "torch/utils/benchmark/*", "torch/_inductor/codegen/aoti_runtime/*",
)


def _llama_duplicate(dest: str) -> bool:
    """llama.cpp's pip build copies each library three times (.so, .so.0, .so.0.x.y)."""
    path = dest.replace("\\", "/")
    return path.startswith("llama_cpp/lib/") and bool(_VERSIONED_SO.search(path))


def _excluded_metadata(dest: str) -> bool:
    """The ``.dist-info`` of an excluded package.

    hook-transformers copies the metadata of every package transformers knows of, and
    sentence-transformers decides that ``datasets`` is installed from its metadata alone:
    with the metadata but without the code, loading the embedder fails.
    """
    top = dest.replace("\\", "/").split("/", 1)[0]
    if not top.endswith(".dist-info"):
        return False
    dist = top.split("-", 1)[0].lower().replace(".", "_")
    return dist in _EXCLUDED_TOP or dist.startswith(("pytest", "types_"))


# Files that hooks collect although the app cannot use them. Order matters only for the
# report: a file is charged to the first rule that matches it.
FILE_RULES: dict[str, Rule] = {
    "torch: C++ headers, CMake files, static libraries, test programs": _torch_extra,
    "test data shipped inside packages": _glob(
        "*/tests/*", "*/test/*", "*/testing/_internal/data/*", "sklearn/datasets/data/*",
        "sklearn/datasets/descr/*", "sklearn/datasets/images/*", "scipy/datasets/*",
    ),
    "numpy/scipy C and Cython headers and sources (for compiling against them)": _glob(
        "numpy/*.h", "numpy/*.c", "numpy/*.pxd", "numpy/*.pyx", "numpy/*.pc",
        "scipy/*.h", "scipy/*.pxd", "scipy/*.pyx", "scipy/*.pxi",
    ),
    "Qt translations (the app is English only)": _glob(
        "PySide6/Qt/translations/*",
    ),
    "Qt plugins the app does not use, and the Qt libraries only they load": _glob(
        # Platforms: xcb, wayland and offscreen stay.
        "PySide6/Qt/plugins/platforms/libqvnc.so", "PySide6/Qt/plugins/platforms/libqlinuxfb.so",
        "PySide6/Qt/plugins/platforms/libqminimal.so",
        "PySide6/Qt/plugins/platforms/libqminimalegl.so",
        "PySide6/Qt/plugins/platforms/libqeglfs.so",
        "PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so",
        "PySide6/Qt/plugins/egldeviceintegrations/*", "PySide6/Qt/plugins/generic/*",
        # The virtual keyboard pulls in QML and Qt Quick; the PDF image plugin Qt PDF.
        "PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so",
        "PySide6/Qt/plugins/imageformats/libqpdf.so",
        # Qt's own networking is unused (HTTP goes through httpx).
        "PySide6/Qt/plugins/tls/*", "PySide6/Qt/plugins/networkinformation/*",
        "PySide6/Qt/plugins/sqldrivers/*", "PySide6/Qt/plugins/multimedia/*",
        "PySide6/Qt/plugins/qmltooling/*", "PySide6/Qt/plugins/designer/*",
        "PySide6/Qt/lib/libQt6Pdf*", "PySide6/Qt/lib/libQt6Qml*", "PySide6/Qt/lib/libQt6Quick*",
        "PySide6/Qt/lib/libQt6VirtualKeyboard*", "PySide6/Qt/lib/libQt6EglFSDeviceIntegration*",
        "PySide6/Qt/lib/libQt6EglFsKmsSupport*",
    ),
    # The GTK platform theme: native GTK file dialogs and GTK's font/palette settings on
    # GNOME. Without it Qt draws its own dialogs (or uses the XDG desktop portal, kept) in
    # its Fusion style. The GTK, Pango, cairo, ATK ... libraries it alone needs go with it
    # (drop_orphaned_libraries).
    GTK_THEME_RULE: _glob("PySide6/Qt/plugins/platformthemes/libqgtk3.so"),
    "llama.cpp: duplicate versioned copies of its libraries": _llama_duplicate,
    "metadata (.dist-info) of the excluded packages": _excluded_metadata,
}


_EXCLUDED_TOP = {name.lower() for group in EXCLUDED_MODULES.values() for name in group
                 if "." not in name}


def excluded_modules(torch: bool = True) -> list[str]:
    """Every module name in :data:`EXCLUDED_MODULES`, and :data:`TORCH_STACK` unless
    ``torch``."""
    names = [name for group in EXCLUDED_MODULES.values() for name in group]
    return names if torch else [*names, *TORCH_STACK]


def _size(source: str) -> int:
    try:
        return os.path.getsize(source)
    except OSError:
        return 0


def apply_rules(entries: Iterable[Entry], rules: dict[str, Rule],
                removed: dict[str, dict[str, int]],
                dropped: list[Entry] | None = None) -> list[Entry]:
    """The entries no rule matches; ``removed[rule]`` counts the files and bytes dropped,
    and ``dropped`` (if given) receives the dropped entries."""
    kept: list[Entry] = []
    for entry in entries:
        dest = entry[0]
        for name, rule in rules.items():
            if rule(dest):
                stats = removed.setdefault(name, {"files": 0, "bytes": 0})
                stats["files"] += 1
                stats["bytes"] += _size(entry[1])
                if dropped is not None:
                    dropped.append(entry)
                break
        else:
            kept.append(entry)
    return kept


def drop_dangling_links(entries: Iterable[Entry], kept: set[str],
                        removed: dict[str, dict[str, int]]) -> list[Entry]:
    """The entries less the ``SYMLINK`` ones whose target is not in ``kept``.

    PyInstaller links each library it collected into a sub-folder (``PySide6/Qt/lib/``) from
    the top folder; a rule that removed the library would leave the link dangling.
    """
    out: list[Entry] = []
    for entry in entries:
        dest, target, kind = entry
        if kind == "SYMLINK":
            resolved = os.path.normpath(os.path.join(os.path.dirname(dest), target))
            if resolved.replace("\\", "/") not in kept:
                stats = removed.setdefault("links to removed files", {"files": 0, "bytes": 0})
                stats["files"] += 1
                continue
        out.append(entry)
    return out


_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")


def elf_needed(path: str) -> list[str]:
    """The ``DT_NEEDED`` sonames of an ELF file (``readelf -d``); [] if it is not ELF."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return []
    except OSError:
        return []
    out = subprocess.run(["readelf", "-d", "-W", path], capture_output=True, text=True,
                         check=False).stdout
    return _NEEDED.findall(out)


def drop_orphaned_libraries(entries: Iterable[Entry], dropped: Iterable[Entry],
                            removed: dict[str, dict[str, int]],
                            needed: Callable[[str], list[str]] = elf_needed) -> list[Entry]:
    """The entries less the libraries that only ``dropped`` files needed.

    PyInstaller collects each binary's ``DT_NEEDED`` libraries; when a rule removes a binary
    (Qt's gtk3 theme plugin), the libraries it pulled in (GTK, Pango, cairo, ...) stay unless
    something else still needs them. A candidate is any library in the (transitive) needs of
    a dropped binary; it goes when no kept binary needs it, directly or through other kept
    libraries. Only ``DT_NEEDED`` links count, so a library that the bundle loads with
    ``dlopen`` is never a candidate unless a dropped binary linked it.
    """
    entries = list(entries)
    by_name: dict[str, Entry] = {}
    for entry in entries:
        if entry[2] != "SYMLINK":
            by_name.setdefault(os.path.basename(entry[0]), entry)
    cache: dict[str, list[str]] = {}

    def needs(entry: Entry) -> list[str]:
        if entry[1] not in cache:
            cache[entry[1]] = needed(entry[1])
        return cache[entry[1]]

    def closure(start: Iterable[Entry]) -> set[str]:
        seen: set[str] = set()
        todo = list(start)
        while todo:
            for name in needs(todo.pop()):
                if name in by_name and name not in seen:
                    seen.add(name)
                    todo.append(by_name[name])
        return seen

    candidates = closure(dropped)
    roots = [e for e in entries
             if e[2] != "SYMLINK" and os.path.basename(e[0]) not in candidates]
    orphans = candidates - closure(roots)
    out: list[Entry] = []
    for entry in entries:
        if entry[2] != "SYMLINK" and os.path.basename(entry[0]) in orphans \
                and by_name.get(os.path.basename(entry[0])) is entry:
            stats = removed.setdefault(ORPHANS_RULE, {"files": 0, "bytes": 0})
            stats["files"] += 1
            stats["bytes"] += _size(entry[1])
            continue
        out.append(entry)
    return out


def _has_symbols(path: Path) -> bool:
    """Whether an ELF file carries debug info or a static symbol table (``.symtab``)."""
    out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True,
                         check=False).stdout
    return ".debug_" in out or ".symtab" in out


_LOAD = re.compile(r"^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+"
                   r"(0x[0-9a-f]+)\s+([RWE ]+?)\s+(0x[0-9a-f]+)\s*$", re.MULTILINE)


def load_segments(path: Path) -> list[tuple[int, ...]]:
    """The ``PT_LOAD`` program headers of an ELF file: (offset, vaddr, filesz, memsz, flags,
    align), flags as a bit mask R=4 W=2 E=1."""
    out = subprocess.run(["readelf", "-l", "-W", str(path)], capture_output=True, text=True,
                         check=False).stdout
    return [(int(off, 16), int(vaddr, 16), int(filesz, 16), int(memsz, 16),
             sum(bit for flag, bit in (("R", 4), ("W", 2), ("E", 1)) if flag in flags),
             int(align, 16))
            for off, vaddr, filesz, memsz, flags, align in _LOAD.findall(out)]


def loads_the_same(before: list[tuple[int, ...]], after: list[tuple[int, ...]]) -> bool:
    """Whether a stripped file maps what the original mapped: the same segments (address,
    sizes, flags, alignment; only file offsets may move) and each still loadable (address
    and offset congruent modulo the alignment, which glibc checks).

    ``strip`` mangles libraries whose segments ``patchelf`` (auditwheel) rewrote: the OpenBLAS
    of numpy's wheel came out with emptied segments and "ELF load command address/offset not
    page-aligned" at import."""
    if not before or len(before) != len(after):
        return False
    for old, new in zip(before, after, strict=True):
        if old[1:] != new[1:]:
            return False
        offset, vaddr, align = new[0], new[1], max(new[5], 1)
        if (vaddr - offset) % align or align % 4096:
            return False
    return True


def strip_debug_info(folder: Path, removed: dict[str, dict[str, int]]) -> None:
    """``strip --strip-unneeded`` every ELF file under ``folder`` that carries debug info or
    a static symbol table, unless that would change what the loader maps.

    xllamacpp's extension module ships with DWARF (106 MB, 26 MB stripped), and so do
    libpython, the stdlib extensions and a few wheels; most other wheels keep ``.symtab``
    (tokenizers 3.4 MB, cryptography 2.9 MB). Neither is read at run time: the loader and
    ``dlsym`` use the dynamic symbol table, which stays. Each stripped file's loadable segments
    are compared with the original's (:func:`loads_the_same`); a file that ``strip`` would
    break is put back as it was and counted apart. Run on the collected copies, never on the
    installed files; the executable beside ``_internal`` is not touched (its archive is
    appended to it). Linux only (macOS code signatures would break).
    """
    tool = shutil.which("strip")
    if tool is None:
        return
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        if not _has_symbols(path):
            continue
        before = path.stat().st_size
        mode = path.stat().st_mode
        segments = load_segments(path)
        backup = path.with_name(path.name + ".unstripped")
        shutil.copy2(path, backup)
        subprocess.run([tool, "--strip-unneeded", str(path)], check=True)
        if not loads_the_same(segments, load_segments(path)):
            os.replace(backup, path)
            stats = removed.setdefault(STRIP_KEPT_RULE, {"files": 0, "bytes": 0})
            stats["files"] += 1
            continue
        backup.unlink()
        path.chmod(mode)
        stats = removed.setdefault(STRIP_RULE, {"files": 0, "bytes": 0})
        stats["files"] += 1
        stats["bytes"] += before - path.stat().st_size


def link_duplicates(folder: Path, removed: dict[str, dict[str, int]],
                    min_bytes: int = 64 * 1024) -> None:
    """Replace each file under ``folder`` that is byte-identical to another by a relative
    symbolic link to the first of them (in path order).

    The wheels of numpy and SciPy each ship the same libgfortran and libquadmath (auditwheel
    names them by hash, so the sonames are the same too: the loader maps one copy either way).
    Files under ``min_bytes`` are left alone. Linux only, like the bundle's other links.
    """
    by_size: dict[int, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= min_bytes:
            by_size.setdefault(path.stat().st_size, []).append(path)
    for size, paths in sorted(by_size.items()):
        if len(paths) < 2:
            continue
        first_of: dict[str, Path] = {}
        for path in paths:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            first = first_of.setdefault(digest, path)
            if first is path:
                continue
            path.unlink()
            path.symlink_to(os.path.relpath(first, path.parent))
            stats = removed.setdefault(DEDUPE_RULE, {"files": 0, "bytes": 0})
            stats["files"] += 1
            stats["bytes"] += size


def half_precision_copy(source: Path, target: Path) -> int:
    """Copy the sentence-transformers folder ``source`` to ``target`` with the matrices of
    ``model.safetensors`` (every float32 tensor of two or more dimensions) stored as float16;
    vectors (biases, LayerNorm) stay float32. Returns the bytes saved.

    ``reward/bert_encoder.py`` reads every tensor as float32, so only the stored values are
    rounded (relative error <= 2**-11); the vectors it then computes stay within cosine
    0.9999 of the float32 weights' on real texts (tests/test_packaging.py). The config files
    are copied unchanged, so the embedder's cache id (a digest of them) is the same.
    """
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors: dict[str, Any] = {}
    with safe_open(str(source / "model.safetensors"), framework="numpy") as weights:
        metadata = weights.metadata()
        for name in weights.keys():
            tensor = weights.get_tensor(name)
            if tensor.dtype == np.float32 and tensor.ndim >= 2:
                half = tensor.astype(np.float16)
                if not np.isfinite(half).all():
                    raise ValueError(f"{source}: {name} does not fit in float16")
                tensor = half
            tensors[name] = tensor
    save_file(tensors, str(target / "model.safetensors"), metadata=metadata)
    return (source / "model.safetensors").stat().st_size - (
        target / "model.safetensors").stat().st_size


def write_report(path: Path, removed: dict[str, dict[str, int]], trimmed: bool,
                 torch: bool = True) -> None:
    """Save what the rules removed (read by ``benchmarks/packaging.py``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = {k: list(v) for k, v in EXCLUDED_MODULES.items()}
    if not torch:
        groups["torch and what needs it (unless RLHF_PACKAGE_TORCH=1)"] = list(TORCH_STACK)
    data = {"trimmed": trimmed, "torch": torch, "file_rules": removed,
            "excluded_modules": groups}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
