"""``rlhf-desktop export``: the preference pairs (and labels, rankings, a dataset card) in
trainer formats."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from rlhf_desktop.cli.common import CliError, plural
from rlhf_desktop.services.datasets.export_folder import ALL_FORMATS

if TYPE_CHECKING:
    from rlhf_desktop.storage.repo import Repository

__all__ = ["add_export_parser", "cmd_export"]


def add_export_parser(sub: Any) -> None:
    """Register the ``export`` command on the subparsers ``sub``."""
    p = sub.add_parser("export", help="export the preference pairs")
    p.add_argument("--format", choices=[*ALL_FORMATS, "all"],
                   help="default jsonl (all with --folder); openai-dpo: the file an "
                   "OpenAI/Azure DPO fine-tuning job takes; ranking: one line per full ranking "
                   "({prompt, completions, ranking: indices best first})")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--folder", metavar="DIR", help="write every format (or the one given), "
                   "the labels file and a dataset card (README.md) into DIR")
    p.add_argument("--split", metavar="DIR", help="write DIR/train.* and DIR/test.*, split by "
                   "conversation (no conversation on both sides), with a dataset card")
    p.add_argument("--test-share", type=float, default=0.1, help="with --split (default 0.1)")
    p.add_argument("--labels", metavar="FILE", help="also write one line per labeled turn "
                   "(kind: pick, tie, all_bad, edit, ranking; ties and all-bad flags live here)")
    p.add_argument("--parquet", action="store_true", help="write Parquet instead of JSONL "
                   "(the same rows; needs the 'datasets' package)")
    p.add_argument("--license", metavar="ID", help="the licence in the dataset card, a Hub "
                   "identifier such as cc-by-4.0 or mit (default: other, your own data under "
                   "the providers' terms)")


def _check(args: argparse.Namespace) -> str:
    """The format to write; CliError on options that do not go together."""
    if args.folder and args.split:
        raise CliError("give --folder DIR (whole files) or --split DIR (train and test "
                       "files), not both")
    fmt = args.format or ("all" if args.folder else "jsonl")
    to_folder = bool(args.folder or args.split)
    if fmt == "all" and not to_folder:
        raise CliError("--format all writes several files: give --folder DIR or --split DIR")
    if args.license and not to_folder:
        raise CliError("--license goes into the dataset card, which is written with "
                       "--folder DIR or --split DIR")
    if args.parquet and not (to_folder or args.output):
        raise CliError("Parquet is a binary file: give -o FILE, --folder DIR or --split DIR")
    if args.parquet and fmt == "csv":
        raise CliError("csv is already a flat table: export it without --parquet, or use "
                       "--parquet with jsonl (the same rows, metadata as columns)")
    return str(fmt)


def cmd_export(args: argparse.Namespace) -> int:
    """Export pairs (or rankings) to stdout, a file, or a folder with a dataset card."""
    from rlhf_desktop.services.datasets.export_folder import (
        ExportError,
        export_folder,
        split_export,
    )
    from rlhf_desktop.services.labels.export import export_labels
    from rlhf_desktop.storage.repo import Repository

    fmt = _check(args)
    repo = Repository.open()
    try:
        if args.labels:
            turns = export_labels(repo, args.labels)
            print(f"wrote {plural(turns, 'labeled turn')} to {args.labels}", file=sys.stderr)
        try:
            if args.folder or (args.split and fmt == "all"):
                formats = ALL_FORMATS if fmt == "all" else (fmt,)
                done = export_folder(repo, args.folder or args.split, formats,
                                     test_share=None if args.folder else args.test_share,
                                     parquet=args.parquet, license_id=args.license)
                for f in done.files:
                    print(f"wrote {plural(f.rows, _noun(f.config))} to {f.path}",
                          file=sys.stderr)
                if args.parquet and "csv" in formats:
                    print("csv left out: it is a flat table already (the pairs rows are in "
                          "pairs.parquet)", file=sys.stderr)
                print(f"dataset card: {done.card}", file=sys.stderr)
            elif args.split:
                done = split_export(repo, fmt, args.split, args.test_share,
                                    parquet=args.parquet, license_id=args.license)
                train, test = done.path(fmt, "train"), done.path(fmt, "test")
                print(f"exported {plural(done.rows(fmt, 'train'), _noun(fmt))} to {train} and "
                      f"{plural(done.rows(fmt, 'test'), _noun(fmt))} to {test} ({fmt}, split "
                      f"by conversation); dataset card: {done.card}", file=sys.stderr)
            elif args.output:
                count = _to_file(repo, fmt, args.output, args.parquet)
                print(f"exported {plural(count, _noun(fmt))} to {args.output} ({fmt})",
                      file=sys.stderr)
            else:
                _to_stdout(repo, fmt)
        except ExportError as exc:
            raise CliError(str(exc)) from exc
    finally:
        repo.close()
    return 0


def _noun(fmt: str) -> str:
    return {"ranking": "ranking", "labels": "label"}.get(fmt, "pair")


def _to_file(repo: Repository, fmt: str, path: str, parquet: bool) -> int:
    from rlhf_desktop.services.datasets.pairs import export_file

    return export_file(repo, fmt, path, parquet)  # the window's Export… calls it too


def _to_stdout(repo: Repository, fmt: str) -> None:
    import json

    from rlhf_desktop.services.datasets.pairs import export
    from rlhf_desktop.services.labels.export import ranking_records

    if fmt != "ranking":
        export(repo, fmt, sys.stdout)
        return
    wrote = False
    for record in ranking_records(repo):
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        wrote = True
    if not wrote:  # an empty stdout alone says nothing
        print("no rankings to export: rank a turn's replies with Rank… (Alt+R) in the window; "
              "picks are pairs (--format jsonl)", file=sys.stderr)
