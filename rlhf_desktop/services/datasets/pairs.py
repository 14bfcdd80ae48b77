"""Import and export of the preference dataset (files ↔ the database)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rlhf_desktop import config
from rlhf_desktop.core.formats import (
    EXPORT_FORMATS,
    LineError,
    export_lines,
    import_key,
    parse_lines,
)
from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.services.datasets.export_folder import (
    ALL_FORMATS,
    LABELS,
    FolderExport,
    export_folder,
    format_rows,
    write_rows,
)
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.storage.pairs import DeletedPairs, PairRow
from rlhf_desktop.storage.repo import Repository

__all__ = ["FILE_FORMATS", "DatasetService", "DeletedPairs", "ImportFileError", "ImportReport",
           "PairRow", "export", "export_file", "export_to_file", "import_file"]

FILE_FORMATS: tuple[str, ...] = (*ALL_FORMATS, LABELS)
"""What :func:`export_file` writes: the pair formats, ``ranking`` and ``labels``."""

MAX_LINE_BYTES = 64 * 1024 * 1024


class ImportFileError(Exception):
    """The file cannot be imported as a whole; the message says why."""


@dataclass
class ImportReport:
    """What an import found and did."""

    lines: int = 0
    parsed: int = 0
    duplicates: int = 0
    imported: int = 0
    errors: list[LineError] = field(default_factory=list)
    dry_run: bool = False

    @property
    def refused(self) -> bool:
        """True when bad lines stopped the import (nothing was stored)."""
        return bool(self.errors) and self.imported == 0 and not self.dry_run


def import_file(
    repo: Repository, path: str | os.PathLike[str], dry_run: bool = False, skip_bad: bool = False
) -> ImportReport:
    """Parse a JSONL file and store its pairs in one transaction.

    Bad lines are reported by number. If any line is bad, nothing is stored unless
    ``skip_bad`` (the user's confirmation to import the good lines only). Pairs already in
    the database (same prompt, chosen and rejected) are skipped as duplicates.
    """
    file = Path(path)
    if not file.is_file():
        raise ImportFileError(f"{file} does not exist or is not a file")
    with file.open("rb") as fh:
        parsed = parse_lines(fh, MAX_LINE_BYTES)
    report = ImportReport(lines=parsed.lines, parsed=len(parsed.pairs), errors=parsed.errors,
                          dry_run=dry_run)
    if not parsed.pairs and not parsed.errors:
        raise ImportFileError(f"{file} holds no preference pairs (it is empty)")
    seen = {import_key(p) for p in repo.pairs.stream()}
    fresh = []
    for pair in parsed.pairs:
        key = import_key(pair)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        fresh.append(pair)
    if dry_run or (parsed.errors and not skip_bad):
        return report
    report.imported = repo.pairs.add(fresh, source="import")
    return report


def export(repo: Repository, fmt: str, out: IO[str]) -> int:
    """Write every pair in ``fmt`` to ``out``; returns the number of pairs."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    count = 0

    def counted(pairs: Iterator[PreferencePair]) -> Iterator[PreferencePair]:
        nonlocal count
        for pair in pairs:
            count += 1
            yield pair

    for line in export_lines(counted(repo.pairs.stream()), fmt):
        out.write(line)
    return count


def export_to_file(repo: Repository, fmt: str, path: str | os.PathLike[str]) -> int:
    """Export to a file atomically (a failed export never leaves half a file)."""
    buffer = io.StringIO()
    count = export(repo, fmt, buffer)
    config.atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8"))
    return count


def export_file(repo: Repository, fmt: str, path: str | os.PathLike[str],
                parquet: bool = False) -> int:
    """One format to one file, atomically: a pair format (:data:`EXPORT_FORMATS`),
    ``ranking`` (one line per ranking) or ``labels`` (one line per labeled turn, ties and
    "all bad" flags included); Parquet instead of JSON Lines with ``parquet`` (needs the
    ``datasets`` package; ExportError says what to install). Returns the rows written.
    What ``rlhf-desktop export -o FILE`` and the window's Export… both call."""
    if fmt in EXPORT_FORMATS and not parquet:
        return export_to_file(repo, fmt, path)
    rows = [row for _, row in format_rows(repo, fmt)]
    write_rows(fmt, rows, Path(path), parquet)
    return len(rows)


class DatasetService:
    """The dataset page's service: count, page, read, delete (with undo) and export pairs.

    Deletes and restores fire ``labels_did_change``."""

    def __init__(self, repo: Repository, hooks: SessionHooks) -> None:
        self._repo = repo
        self._hooks = hooks

    def count(self, text_filter: str = "") -> int:
        """How many pairs match ``text_filter`` (all without one)."""
        return self._repo.pairs.count(text_filter)

    def page(self, before_id: int | None, limit: int, text_filter: str = "") -> list[PairRow]:
        """Up to ``limit`` rows older than ``before_id`` (newest first; keyset paging)."""
        return self._repo.pairs.rows(before_id, limit, text_filter)

    def get(self, pair_id: int) -> PreferencePair:
        """One pair with its whole prompt."""
        return self._repo.pairs.get(pair_id)

    def delete(self, pair_ids: list[int]) -> tuple[int, DeletedPairs]:
        """Delete pairs (and labels left without pairs); returns the count and an undo token."""
        snapshot = self._repo.pairs.snapshot(pair_ids)
        removed = self._repo.pairs.delete(pair_ids)
        self._hooks.labels_did_change()
        return removed, snapshot

    def restore(self, deleted: DeletedPairs) -> int:
        """Undo a :meth:`delete`; returns how many pairs came back."""
        restored = self._repo.pairs.restore(deleted)
        self._hooks.labels_did_change()
        return restored

    @staticmethod
    def export(fmt: str, path: str | os.PathLike[str], parquet: bool = False) -> int:
        """Export ``fmt`` (any of :data:`FILE_FORMATS`) to ``path`` atomically
        (:func:`export_file`); returns the rows written. Blocking: call it in a worker
        thread (it opens its own connection, as each thread must)."""
        repo = Repository.open()
        try:
            return export_file(repo, fmt, path, parquet)
        finally:
            repo.close()

    @staticmethod
    def export_folder(folder: str | os.PathLike[str]) -> FolderExport:
        """Every format, the labels file and a dataset card (README.md) into ``folder``
        (:func:`~rlhf_desktop.services.datasets.export_folder.export_folder`, as ``rlhf-desktop
        export --folder``). Blocking; its own connection."""
        repo = Repository.open()
        try:
            return export_folder(repo, folder)
        finally:
            repo.close()

    @staticmethod
    def import_file(path: str | os.PathLike[str], dry_run: bool = False,
                    skip_bad: bool = False) -> ImportReport:
        """Import a file of pairs (blocking; its own connection); see :func:`import_file`."""
        repo = Repository.open()
        try:
            return import_file(repo, path, dry_run=dry_run, skip_bad=skip_bad)
        finally:
            repo.close()
