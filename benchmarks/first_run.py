"""A new user's first ``make run``: a fresh clone, an empty pip cache, no compiler allowed.

What it measures (issue 21's first target and acceptance): the seconds from ``make run`` in a
fresh clone of this repository (``git clone`` of HEAD; the Python the Makefile finds; pip's
cache pointed at an empty folder, so every wheel is downloaded) until the app's main window
exists on an X display (Xvfb; found with ``xdotool search --name``), and whether anything
tried to run a C/C++ compiler or a build tool on the way. Every such tool name (``cc``, ``gcc``,
``g++``, ``c++``, ``clang``, ``clang++``, ``cmake``, ``ninja``, ``make`` is left alone as the
Makefile needs it) is put first on ``PATH`` as a shim that records its call and fails, and
``CC``/``CXX`` point at the shims too, so a source build would both be recorded and fail.

The window is closed once it is found (the process group is killed); the clone, the venv and
the cache are removed afterwards. Needs ``Xvfb``, ``xdotool``, ``git``, network access to PyPI.

``.venv/bin/python -m benchmarks.first_run`` (JSON: ``benchmarks/results/first_run.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._report import machine, update_section

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("cc", "gcc", "g++", "c++", "clang", "clang++", "cmake", "ninja")
TARGET_S = 300.0
COMMAND = ".venv/bin/python -m benchmarks.first_run"


def shims(folder: Path, log: Path) -> None:
    """A failing, recording stand-in for every compiler and build tool."""
    folder.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        shim = folder / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 1\n', encoding="utf-8")
        shim.chmod(0o755)


def is_library_probe(call: str) -> bool:
    """``gcc -Wl,-t -o /tmp/x -lNAME``: ctypes.util.find_library's lookup, not a build."""
    words = call.split()
    return len(words) >= 2 and words[1] == "-Wl,-t" and any(w.startswith("-l") for w in words)


def window_id(display: str) -> str | None:
    """The main window's X id once it exists (its title is "RLHF Desktop")."""
    out = subprocess.run(["xdotool", "search", "--name", "RLHF Desktop"], capture_output=True,
                         text=True, env={**os.environ, "DISPLAY": display}, check=False)
    ids = out.stdout.split()
    return ids[0] if ids else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One first run; the figures."""
    work = Path(tempfile.mkdtemp(prefix="first-run-"))
    display = f":{args.display}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app: subprocess.Popen[bytes] | None = None
    try:
        clone = work / "rlhf-desktop"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        head = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        calls = work / "compiler-calls.log"
        calls.touch()
        shims(work / "shims", calls)
        env = {**os.environ, "DISPLAY": display, "PIP_CACHE_DIR": str(work / "pip-cache"),
               "PATH": f"{work / 'shims'}:{os.environ.get('PATH', '')}",
               "CC": str(work / "shims" / "cc"), "CXX": str(work / "shims" / "c++"),
               "RLHF_DESKTOP_HOME": str(work / "data"), "PYTHON": args.python}
        # Nothing from this machine's pip setup: no local wheel folder (find-links), no
        # constraints file, so every wheel comes from the package index as on a new machine.
        env["PIP_CONFIG_FILE"] = os.devnull
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY",
                     "OPENAI_API_KEY", "PIP_FIND_LINKS", "PIP_CONSTRAINT",
                     "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
            env.pop(name, None)
        log = work / "make-run.log"
        started = time.perf_counter()
        with log.open("wb") as out:
            app = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
            shown: float | None = None
            while time.perf_counter() - started < args.timeout:
                if app.poll() is not None:
                    break
                if window_id(display):
                    shown = time.perf_counter() - started
                    break
                time.sleep(0.5)
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        called = calls.read_text(encoding="utf-8").splitlines()
        return {"commit": head, "seconds_to_window": None if shown is None else round(shown, 1),
                "exit_code_before_window": app.returncode,
                # ctypes.util.find_library runs ``gcc -Wl,-t -o TMP -lNAME`` to look a library
                # up when gcc exists (keyring's macOS backend does so at import on every
                # platform): a probe that compiles nothing, None where there is no gcc.
                "compiler_calls": [c for c in called if not is_library_probe(c)],
                "library_lookup_probes": [c for c in called if is_library_probe(c)],
                "pip_cache_mib": round(sum(f.stat().st_size for f in (work / "pip-cache")
                                           .rglob("*") if f.is_file()) / 2**20, 1),
                "venv_mib": round(sum(f.stat().st_size for f in (clone / ".venv").rglob("*")
                                      if f.is_file() and not f.is_symlink()) / 2**20, 1),
                "log_tail": tail}
    finally:
        if app is not None and app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
        xvfb.terminate()
        xvfb.wait()
        shutil.rmtree(work, ignore_errors=True)


def markdown(result: dict[str, Any]) -> str:
    """The docs section."""
    r = result["run"]
    seconds = r["seconds_to_window"]
    met = seconds is not None and seconds <= TARGET_S and not r["compiler_calls"]
    verdict = "**met**" if met else "**missed**"
    cache = (f"{r['pip_cache_mib']} MiB" if r["pip_cache_mib"]
             else "not measured (pip cached nothing here)")
    return "\n".join([
        "## A new user's first `make run` (fresh clone, empty pip cache, no compiler)", "",
        f"`{result['command']}` (JSON: `benchmarks/results/first_run.json`): a fresh clone of "
        f"{r['commit']}, pip's cache pointed at an empty folder (every wheel downloaded), every "
        "compiler and build tool (cc, gcc, g++, c++, clang, clang++, cmake, ninja) shimmed first "
        "on PATH to record its call and fail, pip's configuration of this machine ignored (no "
        "local wheel folder or constraints: every wheel from PyPI); time from `make run` to the "
        "main window on Xvfb. "
        f"Load average before: {result['load_before']}.", "",
        "| figure | value | target | |", "|---|---:|---|---|",
        f"| `make run` to the window, fresh clone, empty pip cache | "
        f"{'did not open' if seconds is None else f'{seconds} s'} | ≤ {TARGET_S:.0f} s | "
        f"{verdict} |",
        f"| compiler or build-tool calls (a source build) | {len(r['compiler_calls'])} | 0 | "
        f"{'met' if not r['compiler_calls'] else '**missed**'} |",
        f"| library look-ups through gcc (`ctypes.util.find_library` in keyring's macOS backend, "
        f"imported on every platform; nothing is compiled, and without gcc it returns None) | "
        f"{len(r['library_lookup_probes'])} | report | |",
        f"| downloaded into pip's cache | {cache} | report | |",
        f"| the app's .venv | {r['venv_mib']} MiB | report | |", ""])


def main(argv: list[str] | None = None) -> None:
    """Run once, write the JSON and the docs section."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--display", type=int, default=93)
    p.add_argument("--timeout", type=float, default=1200.0)
    p.add_argument("--python", default=shutil.which("python3") or sys.executable,
                   help="the Python the Makefile builds the venv with")
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args(argv)
    load = [round(x, 2) for x in os.getloadavg()]
    result = {"benchmark": "first_run", "machine": machine(), "command": COMMAND,
              "load_before": load, "run": run(args),
              "load_after": [round(x, 2) for x in os.getloadavg()]}
    out = REPO / "benchmarks" / "results" / "first_run.json"
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if not args.no_docs:
        update_section("first_run", markdown(result))


if __name__ == "__main__":
    main()
