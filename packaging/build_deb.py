"""Build ``dist/rlhf-desktop_<version>_<arch>.deb`` from the PyInstaller bundle (``make deb``).

The package holds

* the bundle folder as ``/opt/rlhf-desktop/`` (the binary is ``/opt/rlhf-desktop/rlhf-desktop``);
* ``/usr/bin/rlhf-desktop``, a two-line wrapper that execs it (a wrapper rather than a link: the
  bootloader finds ``_internal/`` next to the binary it was started as);
* ``/usr/share/applications/rlhf-desktop.desktop`` (from ``resources/rlhf-desktop.desktop``,
  ``Exec=/usr/bin/rlhf-desktop``);
* the hicolor icons (``resources/icons/<N>x<N>/rlhf-desktop.png`` and ``icon.svg``);
* ``/usr/share/doc/rlhf-desktop/copyright``;
* ``postinst``/``postrm`` that refresh the desktop and icon caches when those tools exist.

``Depends`` is computed from the bundle: every shared library that a bundled ELF file needs and
the bundle does not carry (glibc, the graphics stack, X11/xcb, fontconfig...) is looked up on
the build machine with ``dpkg -S``; ``libc6`` gets the lowest version that every ``GLIBC_x.y``
symbol version referenced needs. The archive is compressed with zstd (dpkg >= 1.21.18: Debian
12, Ubuntu 21.10 and later, which the bundle's glibc needs anyway).

Only the standard library, ``objdump`` (binutils), ``dpkg``, ``dpkg-deb``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The same icons, paths under hicolor/, as the per-user install (packaging/install_desktop.py).
from install_desktop import APP_ID, RESOURCES, ROOT, icon_files

PREFIX = Path("opt") / APP_ID
MAINTAINER = "rlhf-desktop maintainers <rlhf-desktop@users.noreply.github.com>"
DESCRIPTION = """\
Desktop chat app whose everyday use labels RLHF preferences
 Chat with several replies per turn (a built-in offline model, Azure OpenAI or
 OpenAI); the reply you pick is a preference label. The labels train a reward
 model that ranks later replies, and can tune the chat model itself.
 .
 This package holds a self-contained PyInstaller bundle in /opt/rlhf-desktop
 (Python, Qt, llama.cpp and the model weights included)."""

POSTINST = """\
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q /usr/share/applications || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 \\
            && [ -f /usr/share/icons/hicolor/index.theme ]; then
        gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
    fi
fi
exit 0
"""

POSTRM = """\
#!/bin/sh
set -e
case "$1" in
    remove|purge)
        if command -v update-desktop-database >/dev/null 2>&1 \\
                && [ -d /usr/share/applications ]; then
            update-desktop-database -q /usr/share/applications || true
        fi
        if command -v gtk-update-icon-cache >/dev/null 2>&1 \\
                && [ -f /usr/share/icons/hicolor/index.theme ]; then
            gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
        fi
        ;;
esac
exit 0
"""

WRAPPER = f"""\
#!/bin/sh
exec /{PREFIX}/{APP_ID} "$@"
"""

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rlhf-desktop

Files: *
License: MIT
Comment: /opt/rlhf-desktop/_internal holds third-party packages (Python, Qt, PyTorch,
 llama.cpp, scikit-learn, the all-MiniLM-L6-v2 and SmolLM2 weights...) under their own
 licences; their metadata is in the *.dist-info folders there.
"""

_NEEDED = re.compile(r"^\s*NEEDED\s+(\S+)", re.M)
_GLIBC = re.compile(r"\bGLIBC_(\d+)\.(\d+)(?:\.(\d+))?")


def deb_arch() -> str:
    """Debian's name of this machine's architecture (``amd64``...)."""
    out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return out.stdout.strip() or "amd64"


def deb_name(version: str, arch: str) -> str:
    """``rlhf-desktop_<version>_<arch>.deb``."""
    return f"{APP_ID}_{version}_{arch}.deb"


def desktop_entry(template: Path = RESOURCES / f"{APP_ID}.desktop") -> str:
    """The desktop entry with ``Exec`` and ``TryExec`` at ``/usr/bin/rlhf-desktop``."""
    lines = []
    for line in template.read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = f"Exec=/usr/bin/{APP_ID} %F" if "%" in line else f"Exec=/usr/bin/{APP_ID}"
        elif line.startswith("TryExec="):
            line = f"TryExec=/usr/bin/{APP_ID}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(folder: Path) -> Iterator[Path]:
    """Every regular ELF file under ``folder`` (links not followed)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and _is_elf(path):
            yield path


def elf_needs(files: Iterable[Path]) -> tuple[set[str], tuple[int, ...]]:
    """The ``DT_NEEDED`` sonames of these ELF files, and the highest ``GLIBC_x.y`` symbol
    version they reference (both from ``objdump -p``)."""
    names: set[str] = set()
    floor: tuple[int, ...] = (2, 2)
    for path in files:
        out = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True)
        names.update(_NEEDED.findall(out.stdout))
        for match in _GLIBC.finditer(out.stdout):
            floor = max(floor, tuple(int(g) for g in match.groups() if g is not None))
    return names, floor


def _ldconfig_paths() -> dict[str, str]:
    """soname -> path of the system's shared libraries (this architecture's first)."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    paths: dict[str, str] = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\S+) \((.*)\) => (\S+)", line)
        if match and ("x86-64" in match.group(2) or "64bit" in match.group(2)
                      or "x86-64" not in out):
            paths.setdefault(match.group(1), match.group(3))
    return paths


def _owner(path: str) -> str | None:
    """The Debian package that ships ``path`` (``dpkg -S``), following /lib -> /usr/lib."""
    candidates = [path, os.path.realpath(path)]
    candidates += [c.replace("/usr/lib/", "/lib/", 1) for c in candidates]
    candidates += [c.replace("/lib/", "/usr/lib/", 1) for c in candidates
                   if not c.startswith("/usr/")]
    for candidate in dict.fromkeys(candidates):
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0 and ":" in out.stdout:
            return out.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def system_depends(bundle: Path) -> tuple[list[str], list[str]]:
    """(Depends, sonames needed but not found on this machine) for the bundle's ELF files."""
    files = list(elf_files(bundle))
    carried = {p.name for p in bundle.rglob("*")}
    needed, glibc = elf_needs(files)
    missing = sorted(needed - carried)
    where = _ldconfig_paths()
    packages: set[str] = set()
    unknown: list[str] = []
    for soname in missing:
        owner = _owner(where[soname]) if soname in where else None
        if owner is None:
            unknown.append(soname)
        else:
            packages.add(owner.split(":")[0])
    packages.discard("libc6")
    return [f"libc6 (>= {'.'.join(map(str, glibc))})", *sorted(packages)], unknown


def folder_kib(folder: Path) -> int:
    """``Installed-Size``: KiB of the files under ``folder``."""
    total = sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_dir())
    return (total + 1023) // 1024


def control(version: str, arch: str, depends: list[str], installed_kib: int) -> str:
    """The ``DEBIAN/control`` file."""
    fields = {
        "Package": APP_ID,
        "Version": version,
        "Architecture": arch,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(installed_kib),
        "Depends": ", ".join(depends),
        "Recommends": "desktop-file-utils, hicolor-icon-theme",
        "Section": "utils",
        "Priority": "optional",
        "Homepage": "https://github.com/rlhf-desktop/rlhf-desktop",
        "Description": DESCRIPTION,
    }
    return "".join(f"{key}: {value}\n" for key, value in fields.items())


def _copy_tree(source: Path, target: Path) -> None:
    """Hard-link (else copy) ``source`` to ``target``; modes 0755/0644, links kept."""
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        (target / rel).chmod(0o755)
        for name in [*dirnames, *filenames]:
            src = Path(dirpath) / name
            dst = target / rel / name
            if src.is_symlink():
                dst.symlink_to(os.readlink(src))
            elif src.is_file():
                mode = 0o755 if src.stat().st_mode & stat.S_IXUSR else 0o644
                if src.stat().st_mode & 0o777 != mode:
                    src.chmod(mode)  # so that a hard link keeps the right mode
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
                    dst.chmod(mode)


def _parent(root: Path, rel: Path) -> Path:
    """Create the parent folders of ``root / rel`` below ``root`` (mode 0755); the path."""
    path = root / rel
    for parent in reversed(rel.parents):
        folder = root / parent
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)
    return path


def _write(root: Path, rel: Path, text: str, mode: int = 0o644) -> None:
    path = _parent(root, rel)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def stage(bundle: Path, staging: Path, version: str, arch: str,
          depends: list[str]) -> None:
    """Lay out the package's files and ``DEBIAN/`` under ``staging``."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    staging.chmod(0o755)
    _copy_tree(bundle, _parent(staging, PREFIX))
    share = Path("usr") / "share"
    _write(staging, Path("usr") / "bin" / APP_ID, WRAPPER, 0o755)
    _write(staging, share / "applications" / f"{APP_ID}.desktop", desktop_entry())
    for source, rel in icon_files():
        target = _parent(staging, share / "icons" / "hicolor" / rel)
        shutil.copyfile(source, target)
        target.chmod(0o644)
    _write(staging, share / "doc" / APP_ID / "copyright", COPYRIGHT)
    installed = folder_kib(staging)
    _write(staging, Path("DEBIAN") / "control", control(version, arch, depends, installed))
    _write(staging, Path("DEBIAN") / "postinst", POSTINST, 0o755)
    _write(staging, Path("DEBIAN") / "postrm", POSTRM, 0o755)


def build(bundle: Path, out: Path, version: str, arch: str, staging: Path,
          compression: str = "zstd", depends: list[str] | None = None) -> Path:
    """Stage and ``dpkg-deb --build``; returns the .deb's path."""
    if not (bundle / APP_ID).is_file():
        raise SystemExit(f"{bundle} has no {APP_ID} binary; run `make package` first")
    if depends is None:
        depends, unknown = system_depends(bundle)
        if unknown:
            print(f"build_deb: not on this machine, left out of Depends: {' '.join(unknown)}",
                  file=sys.stderr)
    stage(bundle, staging, version, arch, depends)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build",
                    str(staging), str(out)], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(staging)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``build_deb.py BUNDLE --version V [--out FILE]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("bundle", type=Path, help="the bundle folder (dist/rlhf-desktop)")
    parser.add_argument("--version", required=True)
    parser.add_argument("--arch", default=None, help="default: dpkg --print-architecture")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: dist/rlhf-desktop_<version>_<arch>.deb")
    parser.add_argument("--staging", type=Path, default=ROOT / "build" / "deb")
    parser.add_argument("--compression", default="zstd", choices=["zstd", "xz", "gzip", "none"])
    args = parser.parse_args(argv)
    arch = args.arch or deb_arch()
    out = args.out or ROOT / "dist" / deb_name(args.version, arch)
    path = build(args.bundle, out, args.version, arch, args.staging, args.compression)
    print(f"{path} ({path.stat().st_size / 1024 / 1024:,.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
