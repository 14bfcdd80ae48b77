"""Import contracts: Qt stays in ui/ and app.py; widgets talk to services only (never storage,
providers, reward or tune); tune never imports services; core is pure (it imports only domain,
the standard library and the numeric stack); layers point one way. Each contract is also shown
to fail on a module that breaks it."""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import rlhf_desktop

ROOT = Path(__file__).resolve().parent.parent


CONTRACTS = (
    "Qt stays in ui/, runtime/ and app.py",
    "Widgets talk to services only: ui never imports storage, providers, reward or tune",
    "tune never imports services",
    "core is pure",
    "Layers: ui -> runtime -> services -> tune -> storage/reward/providers -> config -> core",
)


def _words(text: str) -> str:
    """lint-imports' report with its line wrapping undone."""
    return " ".join(text.split())


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = _words(proc.stdout)
    for name in CONTRACTS:
        assert name in report, (name, proc.stdout)
    assert "Qt stays in ui/, runtime/ and app.py KEPT" in report
    assert "BROKEN" not in report


def _lint_copy_with(tmp_path: Path, module: str, code: str) -> str:
    """lint-imports on a copy of the package with one more module (``module``, a path under
    rlhf_desktop/): its report, line wrapping undone; asserts that it failed."""
    shutil.copytree(ROOT / "rlhf_desktop", tmp_path / "rlhf_desktop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "rlhf_desktop" / module).write_text(code)
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True, timeout=110,
                          env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert proc.returncode != 0, proc.stdout
    return _words(proc.stdout)


def test_a_widget_importing_storage_breaks_the_contract(tmp_path: Path):
    """A copy of the package with one widget that reaches past the services into storage:
    lint-imports must fail, naming the forbidden import."""
    shutil.copytree(ROOT / "rlhf_desktop", tmp_path / "rlhf_desktop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "rlhf_desktop" / "ui" / "reaches_past.py").write_text(
        "from rlhf_desktop.storage.repo import Repository\n\nREPO = Repository\n")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True, timeout=110,
                          env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert proc.returncode != 0, proc.stdout
    assert "Widgets talk to services only" in proc.stdout and "BROKEN" in proc.stdout
    assert "rlhf_desktop.ui.reaches_past -> rlhf_desktop.storage.repo" in proc.stdout


def test_a_widget_importing_tune_breaks_the_contract(tmp_path: Path):
    """A widget that lists tuned versions itself instead of asking a service: the layers
    allow ui above tune, so it is the widgets' contract that must catch it."""
    report = _lint_copy_with(tmp_path, "ui/lists_versions.py",
                             "from rlhf_desktop.tune.versions import list_versions\n\n"
                             "FIND = list_versions\n")
    assert "Widgets talk to services only: ui never imports storage, providers, reward or " \
        "tune BROKEN" in report
    assert "rlhf_desktop.ui.lists_versions -> rlhf_desktop.tune.versions" in report


def test_tune_importing_services_breaks_the_contract(tmp_path: Path):
    """The tune process exporting its pairs through a service (as tune/runs.py once did)."""
    report = _lint_copy_with(tmp_path, "tune/exports.py",
                             "from rlhf_desktop.services.datasets.pairs import export_to_file\n\n"
                             "EXPORT = export_to_file\n")
    assert "tune never imports services: the tune process runs without the app's services " \
        "BROKEN" in report
    assert "rlhf_desktop.tune.exports -> rlhf_desktop.services.datasets.pairs" in report
    assert "-> core -> domain BROKEN" in report  # the layers say so too


def test_core_importing_storage_breaks_the_contract(tmp_path: Path):
    """A rule in core that reads the database."""
    report = _lint_copy_with(tmp_path, "core/reads_labels.py",
                             "import sqlite3\n\n"
                             "from rlhf_desktop.storage.repo import Repository\n\n"
                             "REPO, DB = Repository, sqlite3\n")
    assert "core is pure: no other layer, no Qt, no storage engine, no model runtime " \
        "BROKEN" in report
    assert "rlhf_desktop.core.reads_labels -> rlhf_desktop.storage.repo" in report
    assert "rlhf_desktop.core.reads_labels -> sqlite3" in report


CORE_MAY_IMPORT = {"rlhf_desktop.domain", "numpy", "sklearn", "threadpoolctl"}
"""What core may import besides itself and the standard library: the domain dataclasses and
the numeric stack of the Bradley-Terry fit."""

_CORE_IMPORTS = """
import json, sys
import grimp
graph = grimp.build_graph("rlhf_desktop", include_external_packages=True, cache_dir=None)
core = {m for m in graph.modules if m == "rlhf_desktop.core" or m.startswith("rlhf_desktop.core.")}
found = set()
for module in core:
    found |= graph.find_modules_directly_imported_by(module)
print(json.dumps(sorted(found - core)))
"""


def _outside_imports_of_core(root: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _CORE_IMPORTS], cwd=root, capture_output=True,
                          text=True, timeout=110, env={"PYTHONPATH": str(root), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    return {m for m in json.loads(proc.stdout)
            if m not in CORE_MAY_IMPORT and m.split(".")[0] not in sys.stdlib_module_names}


def test_core_imports_only_domain_the_standard_library_and_numbers():
    assert _outside_imports_of_core(ROOT) == set()


def test_core_importing_a_client_library_breaks_the_allowlist(tmp_path: Path):
    """An allowlist, not a blocklist: any library outside it fails, here an HTTP client
    and the config layer."""
    shutil.copytree(ROOT / "rlhf_desktop", tmp_path / "rlhf_desktop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "rlhf_desktop" / "core" / "fetches.py").write_text(
        "import httpx\n\nfrom rlhf_desktop.config import Settings\n\nGET, S = httpx.get, "
        "Settings\n")
    assert _outside_imports_of_core(tmp_path) == {"httpx", "rlhf_desktop.config"}


def test_core_import_does_not_load_heavy_libraries():
    code = (
        "import sys, rlhf_desktop.cli, rlhf_desktop.services.ranking.rewards, rlhf_desktop.storage;"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'llama_cpp', 'xllamacpp',"
        " 'PySide6')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120).stdout.strip()
    assert out == "[]", out


# A tripwire, not a style rule: a module may pass a few hundred lines when it is one
# responsibility (splitting a class over mixin files to fit a limit is worse), but one past
# 1,000 lines is doing too much and must be split by responsibility.
MODULE_TRIPWIRE = 1000


def test_no_module_grows_past_the_tripwire():
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in Path(rlhf_desktop.__file__).parent.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MODULE_TRIPWIRE
    }
    assert not too_long, too_long


# One repository per aggregate: each storage module below writes only its own tables (a read
# may join another aggregate's tables: the arena and the provenance own no table and only
# read). A new table gets one owner here; a write that spans aggregates is one transaction in
# which the owner of the other table writes (its ``*_in`` method, given the connection).
TABLE_OWNERS = {
    "conversations.py": {"conversations", "turns", "candidates"},
    "labels.py": {"labels"},
    "pairs.py": {"pairs"},
    "versions.py": {"model_versions"},
    "embeddings.py": {"embeddings"},
}
REPOSITORY_PARTS = {"conversations", "labels", "pairs", "versions", "embeddings", "arena",
                    "provenance"}

_WRITE = re.compile(r"\b(?:INSERT(?:\s+OR\s+[A-Z]+)?\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)")
"""A write in the SQL text (the storage writes its keywords in capitals; prose does not)."""
_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)")


def _sql_texts(module: Path) -> list[str]:
    """Every string literal of a module (an f-string's literal parts joined)."""
    texts: list[str] = []
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(v.value for v in node.values
                                 if isinstance(v, ast.Constant) and isinstance(v.value, str)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append(node.value)
    return texts


def _foreign_writes(storage: Path) -> dict[str, set[str]]:
    """Per storage module: the tables its SQL writes that it does not own (migrations and
    the connection's opening excepted)."""
    found: dict[str, set[str]] = {}
    for module in sorted(storage.glob("*.py")):
        if module.name in ("migrations.py", "db.py"):
            continue
        written = {m.group(1) for text in _sql_texts(module)
                   for m in _WRITE.finditer(text)}
        written |= {call.args[1].value for call in ast.walk(ast.parse(module.read_text()))
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id == "restore_row" and len(call.args) > 1
                    and isinstance(call.args[1], ast.Constant)}  # the one generic write
        foreign = written - TABLE_OWNERS.get(module.name, set())
        if foreign:
            found[module.name] = foreign
    return found


def _storage_subclasses(storage: Path) -> dict[str, list[str]]:
    """Classes of storage/ that inherit from another class of storage/ (a mixin)."""
    trees = {m.name: ast.parse(m.read_text()) for m in storage.glob("*.py")}
    ours = {n.name for tree in trees.values() for n in ast.walk(tree)
            if isinstance(n, ast.ClassDef)}
    return {n.name: bases for tree in trees.values() for n in ast.walk(tree)
            if isinstance(n, ast.ClassDef)
            and (bases := [b.id for b in n.bases if isinstance(b, ast.Name) and b.id in ours])}


def test_each_storage_repository_writes_only_its_own_tables():
    """A scan of the SQL text: no module writes a table it does not own, and every table of
    the schema has one owner."""
    storage = ROOT / "rlhf_desktop" / "storage"
    assert _foreign_writes(storage) == {}
    schema = {m.group(1) for text in _sql_texts(storage / "migrations.py")
              for m in _TABLE.finditer(text)}
    owned = [t for tables in TABLE_OWNERS.values() for t in tables]
    assert sorted(owned) == sorted(schema), "every table has exactly one owning repository"


def test_a_repository_writing_another_aggregates_table_is_caught(tmp_path: Path):
    storage = tmp_path / "storage"
    shutil.copytree(ROOT / "rlhf_desktop" / "storage", storage,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (storage / "versions.py").open("a") as fh:
        fh.write('\n\nSTALE = "UPDATE pairs SET weight = 0 WHERE label_id = ?"\n')
    with (storage / "arena.py").open("a") as fh:
        fh.write('\n\nBACK = restore_row(conn, "labels", {})\n')
    assert _foreign_writes(storage) == {"versions.py": {"pairs"}, "arena.py": {"labels"}}


def test_repository_composes_one_repository_per_aggregate_without_mixins(tmp_path: Path):
    """``Repository`` inherits nothing; it holds one repository object per aggregate and
    itself offers only opening, closing, a raw transaction and the cross-cutting stats."""
    from rlhf_desktop.storage.repo import Repository

    assert Repository.__bases__ == (object,)
    assert _storage_subclasses(ROOT / "rlhf_desktop" / "storage") == {}
    public = {name for name, value in vars(Repository).items()
              if not name.startswith("_") and (callable(value) or isinstance(value, classmethod))}
    assert public == {"open", "close", "transaction", "stats"}
    repo = Repository.open(tmp_path / "shape.db")
    try:
        parts = {name: type(value) for name, value in vars(repo).items()
                 if not name.startswith("_") and name != "conn"}
        assert set(parts) == REPOSITORY_PARTS
        assert len(set(parts.values())) == len(parts), "one class per aggregate"
        assert all(cls.__module__.startswith("rlhf_desktop.storage.") for cls in parts.values())
    finally:
        repo.close()
