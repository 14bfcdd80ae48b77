"""Bundle size, trims, build time, cold start and self-test time of the PyInstaller bundle.

``.venv/bin/python -m benchmarks.packaging --build-seconds S [--baseline DIR
--baseline-build-seconds S]`` after ``make package`` (the baseline is an untrimmed build:
``RLHF_PACKAGE_TRIM=0 pyinstaller --distpath build/dist-untrimmed --workpath build/untrimmed
packaging/rlhf-desktop.spec``; ``--before benchmarks/results/packaging_<name>.json`` puts an
earlier build's figures beside these, component by component). Writes
``benchmarks/results/packaging.json`` and the "packaging" section of docs/benchmarks.md. Cold
start needs Xvfb and xdotool.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import ROOT, update_section, write_json

DIST = ROOT / "dist" / "rlhf-desktop"
TRIM_REPORT = ROOT / "build" / "pyinstaller" / "rlhf-desktop" / "trim-report.json"
TITLE = "^RLHF Desktop$"
MB = 1024 * 1024
# The size targets: the folder in MiB, the archive (issue 21 named a .tar.gz) in decimal MB.
TARGET_FOLDER_MIB = 450
TARGET_ARCHIVE_MB = 250


def folder_bytes(folder: Path) -> int:
    """Bytes of every regular file under ``folder`` (symbolic links not followed)."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def package_bytes(internal: Path, names: list[str]) -> int:
    """Bytes of the top-level folders (and dist-info) of these packages in a bundle."""
    total = 0
    for name in {n for n in names if "." not in n}:
        for path in [internal / name, *internal.glob(f"{name}-*.dist-info")]:
            if path.is_dir():
                total += folder_bytes(path)
    return total


# What the bundle's ``_internal/`` holds, by component: glob patterns of top-level entries.
# A file counts once, for the first component that matches it; the rest is "other".
COMPONENTS: dict[str, tuple[str, ...]] = {
    "torch (torch, torchgen, functorch)": ("torch", "torch-*", "torchgen", "torchgen-*",
                                           "functorch", "torch.libs"),
    "transformers, sentence-transformers, kernels, trl, peft, accelerate": (
        "transformers", "transformers-*", "sentence_transformers", "sentence_transformers-*",
        "kernels", "kernels-*", "trl", "trl-*", "peft", "peft-*", "accelerate", "accelerate-*"),
    "tokenizers, safetensors, huggingface_hub": (
        "tokenizers", "tokenizers-*", "safetensors", "safetensors-*", "huggingface_hub",
        "huggingface_hub-*", "hf_xet", "hf_xet-*"),
    "model weights (MiniLM + SmolLM2 GGUF)": ("models",),
    "llama.cpp (xllamacpp / llama_cpp)": ("xllamacpp", "xllamacpp-*", "llama_cpp",
                                          "llama_cpp-*", "llama_cpp_python-*", "libgomp*"),
    "PySide6 / Qt": ("PySide6", "PySide6*", "shiboken6", "shiboken6*", "libicu*", "libQt6*"),
    "GTK and its libraries (Qt's gtk3 theme plugin)": (
        "libgtk-3*", "libgdk-3*", "libgdk_pixbuf*", "libpango*", "libcairo*", "libatk*",
        "libharfbuzz*", "libepoxy*", "libgio-2*", "libgobject-2*", "libglib-2*"),
    "scipy": ("scipy", "scipy-*", "scipy.libs"),
    "numpy": ("numpy", "numpy-*", "numpy.libs"),
    "scikit-learn": ("sklearn", "scikit_learn-*", "scikit_learn.libs"),
    "sympy, networkx (torch's)": ("sympy", "sympy-*", "networkx", "networkx-*", "mpmath",
                                  "mpmath-*"),
    "Python runtime (libpython, stdlib extensions, base_library.zip)": (
        "libpython*", "python3*", "base_library.zip", "lib-dynload"),
}


# The executable beside ``_internal/``: PyInstaller's bootloader with the PYZ archive of every
# bundled Python module (compressed) appended to it.
EXECUTABLE = "executable (bootloader + the PYZ archive of the Python modules)"


def components(internal: Path) -> dict[str, int]:
    """Bytes of each :data:`COMPONENTS` entry in a bundle's ``_internal``, plus "other"."""
    sizes = {name: 0 for name in COMPONENTS}
    sizes["other"] = 0
    for entry in sorted(internal.iterdir()):
        size = (folder_bytes(entry) if entry.is_dir() and not entry.is_symlink()
                else entry.stat().st_size if entry.is_file() and not entry.is_symlink() else 0)
        name = next((name for name, patterns in COMPONENTS.items()
                     if any(fnmatch.fnmatch(entry.name, p) for p in patterns)), "other")
        sizes[name] += size
    return sizes


def tarball(dist: Path) -> Path | None:
    """The archive beside the bundle (``.tar.xz``; ``.tar.gz`` before), if ``make package``
    made one."""
    found = sorted(dist.parent.glob("rlhf-desktop-*-linux-*.tar.*"))
    return found[-1] if found else None


def gzip_bytes(dist: Path) -> int:
    """Bytes of a ``.tar.gz`` (gzip -6, as ``make package`` made before) of the bundle folder."""
    tar = subprocess.Popen(["tar", "-C", str(dist.parent), "--owner=0", "--group=0", "-cf", "-",
                            dist.name], stdout=subprocess.PIPE)
    gz = subprocess.Popen(["gzip", "-6"], stdin=tar.stdout, stdout=subprocess.PIPE)
    assert tar.stdout is not None and gz.stdout is not None
    tar.stdout.close()
    total = 0
    while chunk := gz.stdout.read(1 << 20):
        total += len(chunk)
    if gz.wait() != 0 or tar.wait() != 0:
        raise RuntimeError("tar | gzip failed")
    return total


def archive_figures(d: dict[str, Any]) -> tuple[str, int] | None:
    """The archive's name and bytes (results written before the .tar.xz call them tar_gz)."""
    if "archive_bytes" in d:
        return str(d["archive"]), int(d["archive_bytes"])
    if "tar_gz_bytes" in d:
        return str(d["tar_gz"]), int(d["tar_gz_bytes"])
    return None


class Xvfb:
    """A private X server for timing the window."""

    def __init__(self, display: str = ":93") -> None:
        self.display = display
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Xvfb:
        self.proc = subprocess.Popen(["Xvfb", self.display, "-screen", "0", "1400x900x24",
                                      "-nolisten", "tcp"], stderr=subprocess.DEVNULL)
        # Wait for the server's socket: under load Xvfb takes more than a second, and an app
        # started before it listens aborts (Qt: could not connect to display).
        socket = Path("/tmp/.X11-unix") / f"X{self.display.lstrip(':')}"
        deadline = time.monotonic() + 30
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def window_shown_after(cmd: list[str], display: str, timeout: float = 120.0) -> float:
    """Seconds from starting ``cmd`` until its main window is mapped on ``display``."""
    home = Path(tempfile.mkdtemp(prefix="rlhf-bench-"))
    env = {**os.environ, "DISPLAY": display, "RLHF_DESKTOP_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config"), "QT_QPA_PLATFORM": "xcb",
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    started = time.perf_counter()
    app = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        while time.perf_counter() - started < timeout:
            found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", TITLE],
                                   env=env, capture_output=True, text=True)
            if found.stdout.strip():
                return time.perf_counter() - started
            if app.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {app.returncode} before its window")
            time.sleep(0.02)
        raise TimeoutError(f"no window after {timeout} s")
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait()
        shutil.rmtree(home, ignore_errors=True)


def cold_starts(cmd: list[str], runs: int) -> list[float]:
    """Window-shown times of ``runs`` fresh processes (the first is the coldest)."""
    with Xvfb() as x:
        return [window_shown_after(cmd, x.display) for _ in range(runs)]


def self_test(binary: Path) -> dict[str, Any]:
    """Wall time and summary line of the bundle's ``--self-test``."""
    started = time.perf_counter()
    proc = subprocess.run([str(binary), "--self-test"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HOME": tempfile.mkdtemp()})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return {"wall_s": round(wall, 2), "summary": proc.stdout.strip().splitlines()[-1]}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure, as one JSON-able mapping."""
    dist: Path = args.dist
    data: dict[str, Any] = {"bundle_bytes": folder_bytes(dist)}
    archive = tarball(dist)
    if archive is not None:
        data["archive"] = archive.name
        data["archive_bytes"] = archive.stat().st_size
    if args.gzip_equivalent:
        data["tar_gz_equivalent_bytes"] = gzip_bytes(dist)
    data["build_s"] = args.build_seconds
    data["models_bytes"] = folder_bytes(dist / "_internal" / "models")
    data["components_bytes"] = components(dist / "_internal")
    data["components_bytes"][EXECUTABLE] = (dist / "rlhf-desktop").stat().st_size
    report: Path = args.trim_report
    trims = json.loads(report.read_text()) if report.exists() else {}
    data["file_rules"] = trims.get("file_rules", {})
    if args.baseline is not None:
        internal = Path(args.baseline) / "_internal"
        data["baseline_bytes"] = folder_bytes(Path(args.baseline))
        data["baseline_build_s"] = args.baseline_build_seconds
        data["excluded_module_groups"] = {
            group: package_bytes(internal, names)
            for group, names in trims.get("excluded_modules", {}).items()
        }
    binary = dist / "rlhf-desktop"
    data["self_test"] = self_test(binary)
    data["cold_start_bundle_s"] = [round(t, 2) for t in cold_starts([str(binary)], args.runs)]
    source = ROOT / ".venv" / "bin" / "rlhf-desktop"
    if source.exists():
        data["cold_start_source_s"] = [round(t, 2) for t in cold_starts([str(source)],
                                                                        args.runs)]
    return data


def _mb(n: float) -> str:
    return f"{n / MB:,.0f} MiB"


def _mb1(n: float) -> str:
    return f"{n / MB:,.1f} MiB"


def _change(before: int, now: int) -> str:
    delta = (now - before) / MB
    return "0" if abs(delta) < 0.05 else f"{delta:+,.1f} MiB"


def components_table(d: dict[str, Any]) -> list[str]:
    """What the folder holds, by component, beside the ``before`` build's figures if given."""
    sizes: dict[str, int] = d["components_bytes"]
    before: dict[str, Any] | None = d.get("before")
    old: dict[str, int] = before.get("components_bytes", {}) if before else {}
    if before and EXECUTABLE not in old and "bundle_bytes" in before:
        # Older results counted ``_internal/`` only: the executable is the rest of the folder.
        old = {**old, EXECUTABLE: before["bundle_bytes"] - sum(old.values())}
    lines = ["What the folder holds, by component (`_internal/` and the executable; a file "
             "counts once, so the rows add up to the folder):", ""]
    if not before:
        lines += ["| component | size |", "|---|---:|"]
        for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {_mb1(size)} |")
        return lines
    lines += [f"| component | before ({before.get('label', 'earlier build')}) | now | change |",
              "|---|---:|---:|---:|"]
    names = sorted(set(sizes) | set(old), key=lambda n: -max(sizes.get(n, 0), old.get(n, 0)))
    for name in names:
        if sizes.get(name, 0) == old.get(name, 0) == 0:
            continue
        lines.append(f"| {name} | {_mb1(old.get(name, 0))} | {_mb1(sizes.get(name, 0))} | "
                     f"{_change(old.get(name, 0), sizes.get(name, 0))} |")
    was, now = before["bundle_bytes"], d["bundle_bytes"]
    lines.append(f"| **folder** | **{_mb1(was)}** | **{_mb1(now)}** | **{_change(was, now)}** |")
    old_archive, new_archive = archive_figures(before), archive_figures(d)
    if old_archive and new_archive:
        lines.append(f"| **archive** (`{old_archive[0]}` → `{new_archive[0]}`) | "
                     f"**{old_archive[1] / 1e6:,.0f} MB** | **{new_archive[1] / 1e6:,.0f} MB** | "
                     f"**{(new_archive[1] - old_archive[1]) / 1e6:+,.0f} MB** |")
    return lines


def markdown(d: dict[str, Any]) -> str:
    """The docs/benchmarks.md section."""
    lines = ["## Packaging (PyInstaller one-folder bundle, Linux x86-64)", "",
             "`make package`, then `.venv/bin/python -m benchmarks.packaging` (see its "
             "docstring for the untrimmed baseline build). Details: docs/packaging.md.", ""]
    if d.get("note"):
        lines += [f"**Conditions:** {d['note']}", ""]
    lines += ["| | size |", "|---|---:|"]
    if "baseline_bytes" in d:
        lines.append(f"| untrimmed bundle (folder) | {_mb(d['baseline_bytes'])} |")
    lines.append(f"| **trimmed bundle, `dist/rlhf-desktop/`** | **{_mb(d['bundle_bytes'])}** |")
    archive = archive_figures(d)
    if archive:
        lines.append(f"| **`{archive[0]}`** | **{_mb(archive[1])}** ({archive[1] / 1e6:,.0f} MB) |")
    if "tar_gz_equivalent_bytes" in d:
        gz = d["tar_gz_equivalent_bytes"]
        lines.append(f"| the same folder as a `.tar.gz` (gzip -6; not shipped) | {_mb(gz)} "
                     f"({gz / 1e6:,.0f} MB) |")
    lines.append(f"| of which model weights (MiniLM + SmolLM2 GGUF) | {_mb(d['models_bytes'])} |")
    folder_ok = d["bundle_bytes"] <= TARGET_FOLDER_MIB * MB
    lines += ["", f"Targets: folder <= {TARGET_FOLDER_MIB} MiB: "
              f"**{'met' if folder_ok else 'missed'}** ({_mb(d['bundle_bytes'])})"]
    if archive:
        ok = archive[1] <= TARGET_ARCHIVE_MB * 1_000_000
        lines[-1] += (f"; archive (`.tar.{archive[0].rsplit('.', 1)[-1]}`) <= "
                      f"{TARGET_ARCHIVE_MB} MB: **{'met' if ok else 'missed'}** "
                      f"({archive[1] / 1e6:,.0f} MB)")
    if "tar_gz_equivalent_bytes" in d:
        ok = d["tar_gz_equivalent_bytes"] <= TARGET_ARCHIVE_MB * 1_000_000
        lines[-1] += (f"; as a `.tar.gz` it would be {d['tar_gz_equivalent_bytes'] / 1e6:,.0f} MB "
                      f"({'met' if ok else 'missed'})")
    lines[-1] += "."
    if "components_bytes" in d:
        lines += ["", *components_table(d)]
    lines += ["", "Each trim's measured effect (bytes the rule kept out of the folder):", "",
              "| trim | files | saved |", "|---|---:|---:|"]
    for name, stats in d.get("file_rules", {}).items():
        lines.append(f"| {name} | {stats['files']} | {_mb(stats['bytes'])} |")
    for group, size in d.get("excluded_module_groups", {}).items():
        lines.append(f"| modules excluded: {group} | – | {_mb(size)} |")
    if "baseline_bytes" in d:
        saved = d["baseline_bytes"] - d["bundle_bytes"]
        lines.append(f"| **all trims together** (untrimmed − trimmed folder) | | "
                     f"**{_mb(saved)}** |")
        lines += ["", "Excluded modules are charged with their package folders in the untrimmed "
                  "bundle (their compiled code inside the PYZ archive is not counted), and "
                  "libraries that only they loaded go with them; so the rows do not add up "
                  "exactly to the total."]
    lines += ["", "| | time |", "|---|---:|"]
    if d.get("baseline_build_s"):
        lines.append(f"| build, untrimmed (PyInstaller only) | {d['baseline_build_s']:.0f} s |")
    if d.get("build_s"):
        lines.append(f"| build, `make package` (PyInstaller + archive) | {d['build_s']:.0f} s |")
    st = d["self_test"]
    lines.append(f"| `dist/rlhf-desktop/rlhf-desktop --self-test` (wall) | {st['wall_s']:.1f} s |")
    cold = d["cold_start_bundle_s"]
    lines.append(f"| bundle: start to window shown (Xvfb), first run | {cold[0]:.2f} s |")
    lines.append(f"| bundle: start to window shown, median of {len(cold)} | "
                 f"{statistics.median(cold):.2f} s |")
    if "cold_start_source_s" in d:
        src = d["cold_start_source_s"]
        lines.append(f"| `.venv/bin/rlhf-desktop` (unbundled): start to window shown, median | "
                     f"{statistics.median(src):.2f} s |")
    lines += ["", f"Self-test line: `{st['summary']}`", "",
              "Start to window shown: from starting the process to the main window being "
              "mapped on an Xvfb display (polled with `xdotool search --onlyvisible` every "
              "20 ms), a fresh data folder each run. The files were in the page cache (the "
              "bundle had just been built and read); a first start from a cold disk is slower. "
              "The window shows before the embedder and llama.cpp load (they load in worker "
              "threads)."]
    return "\n".join(lines)


def main() -> int:
    """Measure, write the JSON and the docs section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dist", type=Path, default=DIST)
    parser.add_argument("--baseline", type=Path, default=None, help="an untrimmed bundle")
    parser.add_argument("--build-seconds", type=float, default=None)
    parser.add_argument("--baseline-build-seconds", type=float, default=None)
    parser.add_argument("--trim-report", type=Path, default=TRIM_REPORT,
                        help="the spec's trim-report.json of the build measured")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--note", default="", help="the conditions, printed with the figures")
    parser.add_argument("--gzip-equivalent", action="store_true",
                        help="also measure the folder as a .tar.gz (gzip -6)")
    parser.add_argument("--before", type=Path, default=None,
                        help="an earlier build's packaging JSON, compared component by component")
    parser.add_argument("--before-label", default="earlier build",
                        help="what the --before build was, for the table's header")
    args = parser.parse_args()
    if not (args.dist / "rlhf-desktop").exists():
        print(f"{args.dist} has no bundle; run `make package` first", file=sys.stderr)
        return 2
    data = measure(args)
    if args.note:
        data["note"] = args.note
    if args.before is not None:
        earlier = json.loads(args.before.read_text(encoding="utf-8"))
        data["before"] = {key: earlier[key] for key in (
            "bundle_bytes", "archive", "archive_bytes", "tar_gz", "tar_gz_bytes",
            "components_bytes") if key in earlier}
        data["before"]["label"] = args.before_label
        data["before"]["file"] = args.before.name
    write_json("packaging", data)
    update_section("packaging", markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
