"""The data files of every bundled package, for ``rlhf-desktop.spec`` and the packaged tests.

PyInstaller bundles a package's Python modules when the import graph reaches them, but its
non-Python files only when a hook asks for them. A package without a hook (or with a hook that
predates a new data file) then fails at run time in the bundle only: transformers 5 reads
``kernels/_internals/python_depends.json`` at import, and the bundle's
``import sentence_transformers`` died with "Cannot load dependency data, is 'kernels' correctly
installed?". So the spec adds, for every third-party package that ends up in the bundle, each
file of its folder that is neither Python code nor a compiled library (the hooks collect those),
unless a trim rule in ``trim.py`` removes it again. ``tests/test_packaging.py`` checks the built
bundle against the same list.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

# Packages whose hooks collect exactly what the bundle needs and whose folders hold large SDK
# files that a running app never reads.
SKIP_PACKAGES: dict[str, str] = {
    "PySide6": "Qt's hooks collect the plugins and translations of the modules used; the rest "
               "(headers, typesystems, Designer, examples' .pyi) is Qt's SDK",
    "shiboken6": "as PySide6",
    "shiboken6_generator": "as PySide6",
    "rlhf_desktop": "the app's own files: its resources are collected by the spec",
}

_CODE_SUFFIXES = {".py", ".pyc", ".pyo", ".pyi", ".so", ".pyd", ".dll", ".dylib", ".lib",
                  ".a", ".o", ".exe"}


def site_folders() -> list[Path]:
    """The folders third-party packages are installed in (purelib, platlib)."""
    paths = sysconfig.get_paths()
    return sorted({Path(paths[key]).resolve() for key in ("purelib", "platlib")})


def package_folder(name: str) -> Path | None:
    """The folder of an installed third-party package, or None (a module, stdlib, missing)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    sites = site_folders()
    for location in spec.submodule_search_locations:
        folder = Path(location).resolve()
        if any(folder.is_relative_to(site) for site in sites):
            return folder
    return None


def _is_elf_or_pe(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head == b"\x7fELF" or head[:2] == b"MZ" or head in (b"\xcf\xfa\xed\xfe",
                                                                b"\xca\xfe\xba\xbe")


def is_data_file(path: Path) -> bool:
    """Neither Python code, bytecode nor a compiled library (``.so.1``...)."""
    if "__pycache__" in path.parts:
        return False
    if path.suffix in _CODE_SUFFIXES or ".so." in path.name:
        return False
    return not _is_elf_or_pe(path)


def data_files(name: str) -> Iterator[tuple[Path, str]]:
    """(source, destination in the bundle) of each data file in the package ``name``."""
    folder = package_folder(name)
    if folder is None or name in SKIP_PACKAGES:
        return
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and is_data_file(path):
            yield path, f"{name}/{path.relative_to(folder).as_posix()}"


def top_level_names(modules: Iterable[str]) -> list[str]:
    """The distinct top-level names of dotted module names."""
    return sorted({module.split(".", 1)[0] for module in modules})


def metadata_files(name: str) -> Iterator[tuple[Path, str]]:
    """(source, destination) of the ``.dist-info`` files of the distributions that install the
    package ``name``: many packages read their own or a dependency's version at import
    (``importlib.metadata.version``)."""
    if package_folder(name) is None or name in SKIP_PACKAGES:
        return
    for dist_name in importlib.metadata.packages_distributions().get(name, []):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or []:
            if file.parts and file.parts[0].endswith(".dist-info") and file.name != "RECORD":
                source = Path(str(dist.locate_file(file)))
                if source.is_file():
                    yield source, file.as_posix()


def data_entries(modules: Iterable[str],
                 have: Iterable[str] = ()) -> list[tuple[str, str, str]]:
    """PyInstaller TOC entries (destination, source, ``DATA``) of these modules' packages'
    data and metadata files, less the destinations in ``have`` (already collected)."""
    seen = {os.path.normpath(dest) for dest in have}
    entries: list[tuple[str, str, str]] = []
    for name in top_level_names(modules):
        for source, dest in [*data_files(name), *metadata_files(name)]:
            if os.path.normpath(dest) not in seen:
                seen.add(os.path.normpath(dest))
                entries.append((os.path.normpath(dest), str(source), "DATA"))
    return entries
