"""Generate the app icons from ``resources/icon.svg`` (run by hand; the results are committed).

``.venv/bin/python packaging/make_icons.py`` writes:

* ``resources/icons/<N>x<N>/rlhf-desktop.png`` for N in 16 … 512 (Linux icon theme sizes),
* ``resources/icon.ico`` (Windows: PNG-compressed entries 16 … 256),
* ``resources/icon.icns`` (macOS: PNG entries 16 … 1024).

Rasterised with Qt's SVG renderer (PySide6 is already a dependency); the ``.ico`` and
``.icns`` containers are written here directly, so no other tool is needed.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
SVG = RESOURCES / "icon.svg"
APP_ID = "rlhf-desktop"
PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# icns element types holding PNG data, by pixel size (Apple's icns format).
ICNS_TYPES = (
    (b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256),
    (b"ic09", 512), (b"ic10", 1024), (b"ic11", 32), (b"ic12", 64), (b"ic13", 256),
    (b"ic14", 512),
)


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn at ``size`` × ``size`` pixels, as PNG bytes (transparent background)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    if QGuiApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        render_png.app = QGuiApplication(sys.argv[:1])  # type: ignore[attr-defined]
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "icon.png"
        if not image.save(str(out)):
            raise SystemExit(f"could not write a {size} px PNG")
        return out.read_bytes()


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico whose entries are PNG images (supported since Windows Vista)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    directory, blobs = b"", b""
    for size in sizes:
        png = pngs[size]
        dim = 0 if size >= 256 else size  # 0 means 256 in the directory entry
        directory += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(png), offset)
        blobs += png
        offset += len(png)
    return header + directory + blobs


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns with PNG elements."""
    body = b""
    for kind, size in ICNS_TYPES:
        png = pngs[size]
        body += kind + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> int:
    """Write every icon file; print what was written."""
    sizes = sorted(set(PNG_SIZES) | set(ICO_SIZES) | {s for _, s in ICNS_TYPES})
    pngs = {size: render_png(SVG, size) for size in sizes}
    for size in PNG_SIZES:
        path = RESOURCES / "icons" / f"{size}x{size}" / f"{APP_ID}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pngs[size])
        print(path.relative_to(ROOT), len(pngs[size]), "bytes")
    for name, data in (("icon.ico", ico_bytes({s: pngs[s] for s in ICO_SIZES})),
                       ("icon.icns", icns_bytes(pngs))):
        (RESOURCES / name).write_bytes(data)
        print(f"resources/{name}", len(data), "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
