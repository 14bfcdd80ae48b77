"""``rlhf-desktop export``: the preference pairs (and labels) in trainer formats."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rlhf_desktop.cli.common import CliError, plural
from rlhf_desktop.services.formats import EXPORT_FORMATS

__all__ = ["add_export_parser", "cmd_export"]


def add_export_parser(sub: Any) -> None:
    """Register the ``export`` command on the subparsers ``sub``."""
    p = sub.add_parser("export", help="export the preference pairs")
    p.add_argument("--format", default="jsonl", choices=list(EXPORT_FORMATS),
                   help="openai-dpo: the file an OpenAI/Azure DPO fine-tuning job takes")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--split", metavar="DIR", help="write DIR/train.* and DIR/test.*, split by "
                   "conversation (no conversation on both sides)")
    p.add_argument("--test-share", type=float, default=0.1, help="with --split (default 0.1)")
    p.add_argument("--labels", metavar="FILE", help="also write one line per labeled turn "
                   "(kind: pick, tie, all_bad, edit, …; ties and all-bad flags live here)")


def cmd_export(args: argparse.Namespace) -> int:
    """Export pairs."""
    from rlhf_desktop.services.datasets import export, export_to_file
    from rlhf_desktop.services.label_export import export_labels, split_export
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    try:
        if args.labels:
            turns = export_labels(repo, args.labels)
            print(f"wrote {plural(turns, 'labeled turn')} to {args.labels}", file=sys.stderr)
        if args.split:
            try:
                counts = split_export(repo, args.format, args.split, args.test_share)
            except ValueError as exc:
                raise CliError(str(exc)) from exc
            print(f"exported {plural(counts.train, 'pair')} to {counts.train_path} and "
                  f"{plural(counts.test, 'pair')} to {counts.test_path} ({args.format}, split "
                  "by conversation)", file=sys.stderr)
        elif args.output:
            count = export_to_file(repo, args.format, args.output)
            print(f"exported {plural(count, 'pair')} to {args.output} ({args.format})",
                  file=sys.stderr)
        else:
            export(repo, args.format, sys.stdout)
    finally:
        repo.close()
    return 0
