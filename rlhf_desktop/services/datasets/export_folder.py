"""Exports to a folder: every format (or the chosen ones), the per-turn labels, an optional
train/test split by conversation, Parquet instead of JSONL, and a dataset card (README.md)
that the Hugging Face Hub and ``datasets.load_dataset(folder, config)`` read.

Layout: ``DIR/<config>.<ext>`` without a split; with a split ``DIR/train.<ext>`` and
``DIR/test.<ext>`` for one config, ``DIR/<config>/train.<ext>`` and ``…/test.<ext>`` for
several. Configs are named after the formats, except ``jsonl`` (``pairs``) and ``csv``
(``pairs-csv``, file ``pairs.csv``); ``labels`` is the per-turn labels file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.core.formats import (
    CSV_COLUMNS,
    EXPORT_FORMATS,
    csv_lines,
    csv_row,
    export_record,
)
from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.services.labels.export import (
    group_of,
    in_test,
    label_records,
    pair_group,
    ranking_records,
)
from rlhf_desktop.storage.repo import Repository

__all__ = ["ALL_FORMATS", "LABELS", "ExportError", "FolderExport", "WrittenFile",
           "config_name", "csv_record", "export_folder", "format_rows", "parquet_bytes",
           "require_datasets", "split_export", "write_rows"]

ALL_FORMATS: tuple[str, ...] = (*EXPORT_FORMATS, "ranking")
"""Every format ``--format`` takes: the pair formats and ``ranking``."""
LABELS = "labels"
SPLITS = ("train", "test")


class ExportError(ValueError):
    """An export that cannot be written as asked; the message says what to do."""


def config_name(fmt: str) -> str:
    """The dataset-card config (and file stem) of a format."""
    return {"jsonl": "pairs", "csv": "pairs-csv"}.get(fmt, fmt)


def csv_record(pair: PreferencePair) -> dict[str, Any]:
    """A pair as the csv format's row (``metadata`` a JSON string)."""
    return dict(zip(CSV_COLUMNS, csv_row(pair), strict=True))


def format_rows(repo: Repository, fmt: str,
                pairs: Sequence[PreferencePair] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every row of ``fmt`` with the group that keeps it on one side of a split (``pairs``:
    the pairs with metadata, when already read)."""
    if fmt == "ranking":
        return [(group_of(r), r) for r in ranking_records(repo)]
    if fmt == LABELS:
        return [(group_of(r), r) for r in label_records(repo)]
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(ALL_FORMATS)}")
    make: Callable[[PreferencePair], dict[str, Any]] = (
        csv_record if fmt == "csv" else lambda p: export_record(p, fmt))
    source = repo.pairs.stream() if pairs is None else pairs
    return [(pair_group(p), make(p)) for p in source]


def require_datasets() -> None:
    """Raise ExportError, saying how to install it, when ``datasets`` is missing."""
    try:
        import datasets  # noqa: F401
    except ImportError as exc:
        raise ExportError("Parquet is written by the 'datasets' package, which is not "
                          "installed: pip install datasets (or export JSON Lines instead: "
                          "another format, or without --parquet)") from exc


def parquet_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    """Rows as a Parquet file written by ``datasets`` (its features kept in the file).
    Raises ExportError when ``datasets`` is missing (:func:`require_datasets`)."""
    require_datasets()
    import datasets
    from datasets import Dataset

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # no progress bars on the command line's stderr
    try:
        buffer = io.BytesIO()
        Dataset.from_list(list(rows)).to_parquet(buffer)
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return buffer.getvalue()


def _file_bytes(fmt: str, rows: Sequence[dict[str, Any]], parquet: bool) -> bytes:
    if parquet:
        return parquet_bytes(rows)
    if fmt == "csv":
        return "".join(csv_lines([r[c] for c in CSV_COLUMNS] for r in rows)).encode("utf-8")
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def extension(fmt: str, parquet: bool) -> str:
    """The file extension of ``fmt``."""
    return "parquet" if parquet else "csv" if fmt == "csv" else "jsonl"


def write_rows(fmt: str, rows: Sequence[dict[str, Any]], path: Path, parquet: bool) -> None:
    """Write rows of ``fmt`` (from :func:`format_rows`) to ``path`` atomically."""
    if parquet and fmt == "csv":
        raise ExportError("csv is already a flat table: export it without --parquet, or use "
                          "--parquet with jsonl, whose rows it holds with metadata as columns")
    config.atomic_write_bytes(Path(path), _file_bytes(fmt, rows, parquet))


@dataclass(frozen=True)
class WrittenFile:
    """One file of a folder export."""

    config: str
    split: str
    path: Path
    rows: int


@dataclass(frozen=True)
class FolderExport:
    """What a folder export wrote."""

    folder: Path
    files: tuple[WrittenFile, ...]
    card: Path
    test_share: float | None

    def rows(self, config_or_format: str, split: str = "train") -> int:
        """Rows written for a config (or format) and split."""
        name = config_name(config_or_format)
        return sum(f.rows for f in self.files if f.config == name and f.split == split)

    def path(self, config_or_format: str, split: str = "train") -> Path:
        """The file of a config (or format) and split."""
        name = config_name(config_or_format)
        return next(f.path for f in self.files if f.config == name and f.split == split)


def export_folder(repo: Repository, folder: str | os.PathLike[str],
                  formats: Sequence[str] = ALL_FORMATS, *, labels: bool = True,
                  test_share: float | None = None, seed: int = 0, parquet: bool = False,
                  license_id: str | None = None) -> FolderExport:
    """Write ``formats`` (and the labels file, when ``labels``) to ``folder`` with a dataset
    card, split into train and test by conversation when ``test_share`` is given (every row
    of one conversation lands on the same side; imported pairs split by label; a re-export
    splits the same way). With ``parquet`` every file is Parquet (csv is left out when all
    formats are asked for, refused when asked for alone)."""
    from rlhf_desktop.services.datasets.card import check_license, write_card

    try:
        license_id = check_license(license_id)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    chosen = list(dict.fromkeys(formats))
    for fmt in chosen:
        if fmt not in ALL_FORMATS:
            raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(ALL_FORMATS)}")
    if parquet and "csv" in chosen:
        if len(chosen) == 1:
            write_rows("csv", [], Path(folder), parquet=True)  # raises ExportError
        chosen.remove("csv")
    if test_share is not None and not 0.0 < test_share < 1.0:
        raise ExportError("the test share must be between 0 and 1 (for example 0.1)")
    if parquet:
        require_datasets()  # before anything is written
    if labels:
        chosen.append(LABELS)
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a folder to export into")
    out.mkdir(parents=True, exist_ok=True)
    written: list[WrittenFile] = []
    pairs = list(repo.pairs.stream()) if set(chosen) & set(EXPORT_FORMATS) else []
    for fmt in chosen:
        rows = format_rows(repo, fmt, pairs)
        name, ext = config_name(fmt), extension(fmt, parquet)
        if test_share is None:
            parts = {"train": [r for _, r in rows]}
            paths = {"train": out / f"{name.removesuffix('-csv')}.{ext}"}
        else:
            parts = {s: [] for s in SPLITS}
            for group, row in rows:
                parts["test" if in_test(group, test_share, seed) else "train"].append(row)
            base = out if len(chosen) == 1 else out / name
            base.mkdir(exist_ok=True)
            paths = {s: base / f"{s}.{ext}" for s in SPLITS}
        for split, part in parts.items():
            write_rows(fmt, part, paths[split], parquet)
            written.append(WrittenFile(name, split, paths[split], len(part)))
    result = FolderExport(out, tuple(written), out / "README.md", test_share)
    write_card(repo, result, pairs=pairs or list(repo.pairs.stream()), parquet=parquet,
               seed=seed, license_id=license_id)
    return result


def split_export(repo: Repository, fmt: str, folder: str | os.PathLike[str],
                 test_share: float = 0.1, seed: int = 0, parquet: bool = False,
                 license_id: str | None = None) -> FolderExport:
    """One format to ``folder/train.<ext>`` and ``folder/test.<ext>``, split by
    conversation, with the dataset card (see :func:`export_folder`)."""
    return export_folder(repo, folder, [fmt], labels=False, test_share=test_share, seed=seed,
                         parquet=parquet, license_id=license_id)
