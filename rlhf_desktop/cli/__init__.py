"""The command line: ``rlhf-desktop <command>`` (with no command, __main__ opens the window)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from rlhf_desktop import __version__, config
from rlhf_desktop.cli.arena_command import add_arena_parser, arena_for_chat, cmd_arena
from rlhf_desktop.cli.common import CliError, app_session, plural
from rlhf_desktop.cli.common import emit as _emit
from rlhf_desktop.cli.export_command import add_export_parser, cmd_export
from rlhf_desktop.cli.model_commands import (
    cmd_eval,
    cmd_models,
    cmd_score,
    cmd_stats,
    cmd_train,
    cmd_use,
)
from rlhf_desktop.tune.cli import add_tune_parser, run_tune

log = logging.getLogger(__name__)

__all__ = ["CliError", "build_parser", "main", "plural", "run"]

EPILOG = """\
With no command, rlhf-desktop opens the chat window.
Data folder: $RLHF_DESKTOP_HOME or --data-dir, else the platform's user data folder.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by __main__ to decide window vs command)."""
    parser = argparse.ArgumentParser(
        prog="rlhf-desktop",
        description="Chat with several replies per turn; your picks train a reward model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rlhf-desktop {__version__}")
    parser.add_argument("--data-dir", metavar="DIR", help="use DIR as the data folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation (window offscreen, embedder, built-in "
                             "model) in a temporary data folder, print one line, exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a new reward-model version on every stored pair")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")

    p = sub.add_parser("models", help="list the model versions (* = in use)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("use", help="use model VERSION from now on (rollback), or `latest`")
    p.add_argument("version", metavar="VERSION", help="a version number (2 or v2), or latest")

    p = sub.add_parser("eval", help="pairwise accuracy of the current model on a JSONL file")
    p.add_argument("--data", required=True, metavar="FILE", help="pairs in any import format")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("score", help="score replies to a prompt with the current model")
    p.add_argument("--prompt", required=True)
    p.add_argument("responses", nargs="+", metavar="RESPONSE")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("stats", help="counts of chats, labels, pairs and models")
    p.add_argument("--json", action="store_true")

    add_export_parser(sub)

    p = sub.add_parser("import", help="import preference pairs from a JSONL file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="check the file, store nothing")
    p.add_argument("--skip-bad", action="store_true",
                   help="import the good lines even when some lines are bad")

    p = sub.add_parser("chat", help="send one prompt and print the ranked replies")
    p.add_argument("prompt")
    p.add_argument("-n", type=int, default=None, help="candidates (1-8; default: settings)")
    p.add_argument("--provider", choices=list(config.PROVIDERS), default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--arena", action="store_true",
                   help="draw the replies from the arena's sources (see `arena list`)")
    p.add_argument("--json", action="store_true")

    add_arena_parser(sub)
    add_tune_parser(sub)
    return parser


# ---------------------------------------------------------------------------- commands


def cmd_import(args: argparse.Namespace) -> int:
    """Import pairs."""
    from rlhf_desktop.services.datasets.pairs import ImportFileError, import_file
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    try:
        report = import_file(repo, args.file, dry_run=args.dry_run, skip_bad=args.skip_bad)
    except ImportFileError as exc:
        raise CliError(str(exc)) from exc
    finally:
        repo.close()
    for error in report.errors:
        print(f"{args.file}:{error.line}: {error.message}", file=sys.stderr)
    new = report.parsed - report.duplicates
    bad = len(report.errors)
    summary = (f"{plural(report.parsed, 'pair')} read from {plural(report.lines, 'line')}, "
               f"{plural(report.duplicates, 'duplicate')} skipped (already stored or repeated "
               f"in the file), {plural(bad, 'bad line')}")
    if args.dry_run:
        print(f"dry run: {summary}; {new} would be imported")
        return 1 if report.errors and not args.skip_bad else 0
    if report.errors and not args.skip_bad:
        good = "good pair" if new == 1 else "good pairs"
        print(f"{summary}.\nNothing was imported because {plural(bad, 'line is', 'lines are')} "
              f"bad (listed above). Fix {'it' if bad == 1 else 'them'}, or run again with "
              f"--skip-bad to import the {new} {good}.", file=sys.stderr)
        return 2
    print(f"imported {plural(report.imported, 'pair')} ({summary})")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """One headless chat turn through the chosen provider, stored and ranked."""
    import asyncio

    return asyncio.run(_chat(args))


async def _chat(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rlhf_desktop.core.pick_rules import ranked
    from rlhf_desktop.domain import SamplingParams
    from rlhf_desktop.services.chat.service import TurnFailed

    settings = config.load_settings()
    # The arena only with --arena: a plain `chat` asks the one provider, whatever the
    # window's switch says.
    settings = arena_for_chat(settings, args) if args.arena else replace(settings, arena=False)
    if args.provider:
        settings = replace(settings, provider=args.provider)
    n = settings.candidates_per_turn if args.n is None else args.n
    if args.arena:
        n = sum(src.count for src in settings.arena_sources())
    if not 1 <= n <= 8:
        raise CliError("-n must be between 1 and 8")
    params = SamplingParams(
        n=n,
        temperature=settings.temperature if args.temperature is None else args.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens if args.max_tokens is None else args.max_tokens,
        system_prompt=settings.system_prompt,
        seed=args.seed,
    )
    async with app_session(settings) as session:
        # What the window's start does, less its warm-up and its watch on other processes:
        # choose the provider, then load the reward model (a provider error stops first).
        await session.rebuild_provider()
        chat = session.chat
        if chat is None:
            raise CliError(session.provider_error or "no provider could be chosen")
        print(f"provider: {session.provider_line}", file=sys.stderr)
        load_failed: list[str] = []
        session.hooks.training_did_fail.append(load_failed.append)
        await session.load_reward_model(embedder=False)  # loaded by the first score, if any
        if load_failed:
            raise CliError(load_failed[0])
        try:
            turn = await chat.send(None, args.prompt, params=params)
        except TurnFailed as exc:
            raise CliError(f"{exc.error} (the prompt and partial replies are saved)") from exc
        provider = chat.provider
        version = session.reward_version
    order = ranked(turn.candidates)
    data = {
        "turn_id": turn.id,
        "provider": provider.name,
        "model": provider.model,
        "model_version": version,
        "replies": [
            {"rank": r, "index": c.index, "score": c.score, "text": c.text,
             "finish_reason": c.finish_reason, "error": c.error,
             "source": (c.origin or {}).get("name")}
            for r, c in enumerate(order, start=1)
        ],
    }
    scorer = "untrained reward model (provider order kept)" if version is None else f"v{version}"
    lines = [f"{plural(len(order), 'reply', 'replies')} ranked by {scorer}:"]
    for r, c in enumerate(order, start=1):
        score = "  n/a " if c.score is None else f"{c.score:+.3f}"
        note = f" [{c.finish_reason}]" if c.finish_reason not in (None, "stop") else ""
        source = f" from {c.origin.get('name')}" if c.origin else ""
        text = c.text.strip() or (c.error if c.error else "(empty)")
        lines.append(f"\n#{r} score {score}{source}{note}\n{text}")
    _emit(data, args.json, lines)
    return 0


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "models": cmd_models,
    "use": cmd_use,
    "score": cmd_score,
    "stats": cmd_stats,
    "export": cmd_export,
    "import": cmd_import,
    "chat": cmd_chat,
    "arena": cmd_arena,
    "tune": run_tune,
}


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; errors become one line on stderr and exit status 2."""
    from rlhf_desktop.reward.embedder import EmbedderError
    from rlhf_desktop.reward.model import ModelFileError
    from rlhf_desktop.storage.db import DatabaseError
    from rlhf_desktop.storage.repo import StorageError

    if args.data_dir:
        config.set_data_dir(args.data_dir)
    config.setup_logging("INFO" if args.verbose else None)
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return status
    except BrokenPipeError:
        return _reader_went_away()
    except (CliError, config.ConfigError, DatabaseError, StorageError, EmbedderError,
            ModelFileError) as exc:
        print(f"rlhf-desktop: error: {config.redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlhf-desktop: interrupted", file=sys.stderr)
        return 130


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (``| head``): stop quietly, as Unix tools do.

    Python's own flush at exit would fail again and print a traceback, so stdout is pointed
    at /dev/null first. Exit status 141 (128 + SIGPIPE) is what a shell reports for a tool
    that SIGPIPE stopped.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for commands (``rlhf-desktop COMMAND``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return run(args)
