"""Install (or remove) the desktop entry and icons for the current user (Linux).

``make install-desktop`` runs ``packaging/install_desktop.py dist/rlhf-desktop/rlhf-desktop``:

* ``$XDG_DATA_HOME/applications/rlhf-desktop.desktop`` (default ``~/.local/share``), from
  ``resources/rlhf-desktop.desktop`` with ``Exec``/``TryExec`` set to the binary's absolute
  path, so a double-click in the app menu starts the bundle wherever it was unpacked;
* ``$XDG_DATA_HOME/icons/hicolor/<N>x<N>/apps/rlhf-desktop.png`` and
  ``.../scalable/apps/rlhf-desktop.svg``.

Nothing needs root; ``--uninstall`` removes the same files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
APP_ID = "rlhf-desktop"


def data_home() -> Path:
    """``$XDG_DATA_HOME`` or ``~/.local/share``."""
    value = os.environ.get("XDG_DATA_HOME")
    return Path(value) if value else Path.home() / ".local" / "share"


def exec_quote(arg: str) -> str:
    """An ``Exec`` argument quoted by the Desktop Entry rules (double quotes only)."""
    arg = arg.replace("%", "%%")
    reserved = set(' \t\n"\'\\><~|&;$*?#()`')
    if not any(ch in reserved for ch in arg):
        return arg
    escaped = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
    return f'"{escaped}"'


def desktop_entry(binary: Path, template: Path = RESOURCES / f"{APP_ID}.desktop") -> str:
    """The template with ``Exec`` and ``TryExec`` pointing at ``binary`` (absolute)."""
    exe = str(binary.resolve())
    lines = []
    for line in template.read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + exec_quote(exe)
        elif line.startswith("TryExec="):
            line = "TryExec=" + exe
        lines.append(line)
    return "\n".join(lines) + "\n"


def icon_files(resources: Path = RESOURCES) -> list[tuple[Path, str]]:
    """(source, path under ``icons/hicolor``) for every icon to install."""
    files = [(p, f"{p.parent.name}/apps/{APP_ID}.png")
             for p in sorted((resources / "icons").glob(f"*/{APP_ID}.png"))]
    files.append((resources / "icon.svg", f"scalable/apps/{APP_ID}.svg"))
    return files


def install(binary: Path, home: Path) -> list[Path]:
    """Write the entry and icons under ``home``; returns the files written."""
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SystemExit(f"{binary} is not an executable file; run `make package` first")
    written: list[Path] = []
    entry = home / "applications" / f"{APP_ID}.desktop"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(desktop_entry(binary), encoding="utf-8")
    entry.chmod(0o755)
    written.append(entry)
    for source, rel in icon_files():
        target = home / "icons" / "hicolor" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    _refresh_caches(home)
    return written


def uninstall(home: Path) -> list[Path]:
    """Remove what :func:`install` wrote; returns the files removed."""
    removed: list[Path] = []
    targets = [home / "applications" / f"{APP_ID}.desktop"]
    targets += [home / "icons" / "hicolor" / rel for _, rel in icon_files()]
    for path in targets:
        if path.exists():
            path.unlink()
            removed.append(path)
    _refresh_caches(home)
    return removed


def _refresh_caches(home: Path) -> None:
    """Best effort: desktops that cache the menu or the icon theme notice the change."""
    for tool, arg in (("update-desktop-database", home / "applications"),
                      ("gtk-update-icon-cache", home / "icons" / "hicolor")):
        if shutil.which(tool) and arg.is_dir():
            subprocess.run([tool, "-q", str(arg)], check=False, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``install_desktop.py BINARY`` or ``install_desktop.py --uninstall``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("binary", nargs="?", type=Path, help="the bundle's rlhf-desktop")
    parser.add_argument("--uninstall", action="store_true")
    args = parser.parse_args(argv)
    home = data_home()
    if args.uninstall:
        files = uninstall(home)
        print(f"removed {len(files)} files under {home}")
        return 0
    if args.binary is None:
        parser.error("give the path of the bundle's rlhf-desktop binary")
    files = install(args.binary, home)
    print(f"installed {files[0]} (Exec={args.binary.resolve()}) and {len(files) - 1} icons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
