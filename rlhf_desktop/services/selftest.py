"""``rlhf-desktop --self-test``: the Qt-free checks and the runner (app.py adds the Qt step).

Proves that an installed copy or a PyInstaller bundle works end to end without touching the
user's data: a fresh temporary data folder, the window's modules, the embedder scoring two
replies, and the built-in model generating a few tokens. One summary line on stdout; exit
status 0 when every step passed, else 1 with the failing step and its reason on stderr
(then the traceback).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rlhf_desktop import __version__, config

PROMPT = "What is the capital of France?"
REPLIES = ("Paris is the capital of France.", "Bananas are rich in potassium.")
GEN_TOKENS = 8

# Imported lazily by the app (after the window shows); a bundle that lacks one of them
# would only fail later, on a user's first training run or provider switch. Nothing here
# needs torch: the app never imports it unless the user tunes or picks a transformers ranker
# (tests/test_lean_runtime.py), and a bundle without the `tune` extra must pass.
LAZY_MODULES = (
    "sklearn.linear_model",
    "sklearn.model_selection",
    "rlhf_desktop.reward.training",
    "rlhf_desktop.reward.bert_encoder",
    "tokenizers",
    "safetensors.numpy",
    "threadpoolctl",
    "rlhf_desktop.providers.openai_client",
    "openai",
    "keyring",
    "markdown",
    "pygments",
)

Step = Callable[[], str]


class SelfTestError(Exception):
    """A check failed; the message says which and why."""


@dataclass
class StepResult:
    """One check: its name, the seconds it took, what it found (or why it failed)."""

    name: str
    seconds: float
    detail: str
    ok: bool


@dataclass
class Report:
    """Every step of one self-test run."""

    steps: list[StepResult] = field(default_factory=list)
    total_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every step passed."""
        return bool(self.steps) and all(s.ok for s in self.steps)

    def summary(self) -> str:
        """The one line printed on success (or naming the failed step)."""
        kind = "bundle" if config.is_frozen() else "source"
        head = "self-test ok" if self.ok else "self-test FAILED"
        parts = [f"{s.name} {s.detail} ({s.seconds:.1f} s)" for s in self.steps]
        return (f"{head}: rlhf-desktop {__version__} ({kind}); " + "; ".join(parts)
                + f"; total {self.total_s:.1f} s")


@contextmanager
def temporary_data_dir() -> Iterator[Path]:
    """Point ``RLHF_DESKTOP_HOME`` at a fresh folder for the duration; remove it after."""
    previous = os.environ.get(config.HOME_ENV)
    folder = Path(tempfile.mkdtemp(prefix="rlhf-desktop-selftest-"))
    os.environ[config.HOME_ENV] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(config.HOME_ENV, None)
        else:
            os.environ[config.HOME_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)


def check_data_dir(expected: Path) -> str:
    """The data folder is the temporary one, writable, and outside the bundle."""
    folder = config.data_dir()
    if folder.resolve() != expected.resolve():
        raise SelfTestError(f"data folder is {folder}, not the temporary {expected}")
    probe = folder / "probe.txt"
    config.atomic_write_bytes(probe, b"ok")
    if probe.read_bytes() != b"ok":
        raise SelfTestError(f"could not write to {folder}")
    if config.is_frozen() and folder.resolve().is_relative_to(config.bundle_root().resolve()):
        raise SelfTestError("the data folder is inside the bundle")
    icon = config.resource_path("icon.svg")
    if not icon.is_file():
        raise SelfTestError(f"resource missing: {icon}")
    return "temporary, writable"


def check_imports(modules: tuple[str, ...] = LAZY_MODULES) -> str:
    """The modules the app imports only later can be imported."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise SelfTestError(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc
    return f"{len(modules)} lazy modules"


def check_embedder() -> str:
    """Load all-MiniLM-L6-v2 and score two replies by similarity to the prompt."""
    import numpy as np

    from rlhf_desktop.reward.embedder import Embedder

    folder = config.default_embedder_dir()
    embedder = Embedder(folder)
    vectors = embedder.embed([PROMPT, *REPLIES])
    if vectors.shape != (3, 384) or not np.all(np.isfinite(vectors)):
        raise SelfTestError(f"embedder returned vectors of shape {vectors.shape}")
    scores = [float(vectors[0] @ vectors[i]) for i in (1, 2)]
    if not scores[0] > scores[1]:
        raise SelfTestError(f"the relevant reply did not score higher: {scores}")
    return f"scored 2 replies {scores[0]:.2f} > {scores[1]:.2f} ({embedder.backend} runner)"


def check_local_model(tokens: int = GEN_TOKENS) -> str:
    """Generate a few tokens with the built-in model (one thread)."""
    return asyncio.run(_generate(tokens))


async def _generate(tokens: int) -> str:
    from rlhf_desktop.domain import Candidate, Message, SamplingParams
    from rlhf_desktop.providers.base import Done
    from rlhf_desktop.providers.local import LocalProvider

    provider = LocalProvider(config.default_gguf_path(), n_threads=1, n_ctx=512)
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=tokens, seed=1)
    done: Candidate | None = None
    try:
        async for event in provider.stream([Message(role="user", content="Say hello.")],
                                           params):
            if isinstance(event, Done):
                done = event.candidate
    except Exception as exc:
        raise SelfTestError(f"built-in model failed: {exc}") from exc
    finally:
        await provider.aclose()
    if done is None or done.error or not done.text.strip():
        reason = "no reply" if done is None else (done.error or "an empty reply")
        raise SelfTestError(f"the built-in model gave {reason}")
    count = done.completion_tokens if done.completion_tokens is not None else "?"
    return f"{provider.model_path.name} generated {count} tokens {done.text.strip()[:24]!r}"


def run_steps(steps: list[tuple[str, Step]], out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    """Run the steps in order, stop at the first failure; print the summary. Exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    report = Report()
    started = time.perf_counter()
    for name, step in steps:
        t0 = time.perf_counter()
        trace = ""
        try:
            detail, ok = step(), True
        except Exception as exc:  # report every failure the same way
            detail, ok = f"{type(exc).__name__}: {exc}", False
            trace = "".join(traceback.format_exception(exc))
        report.steps.append(StepResult(name, time.perf_counter() - t0, detail, ok))
        if not ok:
            break
    report.total_s = time.perf_counter() - started
    if report.ok:
        print(report.summary(), file=out, flush=True)
        return 0
    failed = report.steps[-1]
    print(f"self-test FAILED at {failed.name}: {config.redact(failed.detail)}", file=err,
          flush=True)
    print(config.redact(trace), file=err, flush=True)
    return 1


def run(qt_step: Step | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """The whole self-test in a temporary data folder; ``qt_step`` is app.py's window check."""
    with temporary_data_dir() as folder:
        steps: list[tuple[str, Step]] = [("data", lambda: check_data_dir(folder))]
        if qt_step is not None:
            steps.append(("qt", qt_step))
        steps += [("imports", check_imports), ("embedder", check_embedder),
                  ("llm", check_local_model)]
        return run_steps(steps, out, err)
