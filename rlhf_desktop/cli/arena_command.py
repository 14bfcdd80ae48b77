"""``rlhf-desktop arena``: the arena's candidate sources without the window.

``arena list`` shows them, ``arena add NAME ...`` adds one, ``arena remove NAME`` removes one,
``arena on`` / ``arena off`` decides whether the window's turns draw their replies from them.
``rlhf-desktop chat "..." --arena`` sends one arena turn (see :func:`arena_for_chat`).
Every change goes through the session's :class:`~rlhf_desktop.services.arena.service.ArenaService`
(``session.arena``, as in the window): validated before anything is written, then saved to
the settings file.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.cli.common import CliError, app_session, emit, plural
from rlhf_desktop.config import ConfigError, Settings
from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.services.arena.service import ArenaService

__all__ = ["add_arena_parser", "arena_for_chat", "cmd_arena"]


def add_arena_parser(sub: Any) -> None:
    """Register ``arena`` (and its actions) on the subparsers ``sub``."""
    p = sub.add_parser("arena", help="the arena's candidate sources: list, add, remove, on, "
                       "off")
    actions = p.add_subparsers(dest="arena_action", metavar="ACTION", required=True)
    q = actions.add_parser("list", help="the sources and whether the arena is on")
    q.add_argument("--json", action="store_true")
    q = actions.add_parser("add", help="add a candidate source")
    q.add_argument("name", metavar="NAME", help="what the leaderboard calls it")
    q.add_argument("--provider", default="auto", choices=list(config.PROVIDERS),
                   help="auto: the chat's own provider (default)")
    q.add_argument("--model", default="", help="deployment or model name (local: a GGUF "
                   "file); default: the configured one")
    q.add_argument("--version", type=int, default=0, dest="chat_model_version",
                   help="local: a tuned chat-model version (0, the default: the base model)")
    q.add_argument("--count", type=int, default=2, help="replies per turn (default 2)")
    q.add_argument("--temperature", type=float, default=None,
                   help="default: the chat's temperature")
    q.add_argument("--base-url", default="", help="compatible: the server's base URL")
    q = actions.add_parser("remove", help="remove the source called NAME")
    q.add_argument("name", metavar="NAME")
    q = actions.add_parser("use", help="only the sources NAME... give replies (a head-to-head; "
                           "the others stay in the list, off); turns the arena on")
    q.add_argument("names", metavar="NAME", nargs="+")
    actions.add_parser("on", help="turns draw their replies from the sources (blind)")
    actions.add_parser("off", help="turns use the one provider again")


def _describe(source: CandidateSource) -> str:
    where = source.provider
    if source.provider == "local" or (source.provider == "auto" and source.chat_model_version):
        where += (f" {version_name(source.chat_model_version)}" if source.chat_model_version
                  else " base")
    if source.model:
        where += f" {source.model}"
    if source.base_url:
        where += f" at {source.base_url}"
    temp = "chat's" if source.temperature is None else f"{source.temperature:g}"
    off = "" if source.active else " (off)"
    return f"{source.name}{off}: {where}, {plural(source.count, 'reply', 'replies')}, " \
           f"temperature {temp}"


def cmd_arena(args: argparse.Namespace) -> int:
    """List or change the candidate sources."""
    return asyncio.run(_arena(args))


async def _arena(args: argparse.Namespace) -> int:
    async with app_session() as session:  # it chooses no provider: none to rebuild
        return _arena_action(session.arena, lambda: session.settings, args)


def _arena_action(arena: ArenaService, settings: Callable[[], Settings],
                  args: argparse.Namespace) -> int:
    action = args.arena_action
    try:
        if action == "add":
            if any(s.name == args.name.strip() for s in arena.sources()):
                raise CliError(f"a source called {args.name.strip()!r} exists already; remove "
                               "it first, or choose another name")
            arena.set_sources([*arena.sources(), CandidateSource(
                name=args.name.strip(), provider=args.provider, model=args.model.strip(),
                temperature=args.temperature, count=args.count,
                chat_model_version=args.chat_model_version, base_url=args.base_url.strip())])
            added = arena.sources()[-1]
            print(f"added {_describe(added)}")
            _warn_if_unusable(added, settings())
        elif action == "remove":
            names = [s.name for s in arena.sources()]
            if args.name not in names:
                raise CliError(f"no source called {args.name!r}; the sources are: "
                               f"{', '.join(names) or 'none'}")
            arena.set_sources([s for s in arena.sources() if s.name != args.name])
            print(f"removed {args.name}")
        elif action == "use":
            names = [s.name for s in arena.sources()]
            unknown = [n for n in args.names if n not in names]
            if unknown:
                raise CliError(f"no source called {', '.join(map(repr, unknown))}; the sources "
                               f"are: {', '.join(names) or 'none'}")
            arena.use_only(list(args.names))
            print(f"arena on: {arena.describe().removeprefix('Arena: ')}")
        elif action in ("on", "off"):
            arena.set_enabled(action == "on")
            print(f"arena on: {arena.describe().removeprefix('Arena: ')}" if action == "on"
                  else "arena off")
        else:
            return _list(arena, args.json)
    except ConfigError as exc:
        hint = ""
        if settings().arena and action == "remove":
            hint = " (turn the arena off first: rlhf-desktop arena off)"
        raise CliError(f"{exc}{hint}; nothing was changed") from exc
    return 0


def _warn_if_unusable(source: CandidateSource, settings: Settings) -> None:
    """Saved anyway (a key or a tuned version may come later), but say it cannot run now."""
    import sys

    from rlhf_desktop.providers import ProviderError
    from rlhf_desktop.providers.select import source_choice

    try:
        source_choice(source, settings)
    except (ProviderError, ConfigError) as exc:
        print(f"note: {source.name} cannot run yet: {config.redact(str(exc))}", file=sys.stderr)


def _list(arena: ArenaService, as_json: bool) -> int:
    sources = arena.sources()
    data = {"enabled": arena.enabled, "sources": [s.to_dict() for s in sources]}
    lines = [f"arena {'on' if arena.enabled else 'off'}: "
             f"{plural(len(sources), 'source')}"]
    lines += [f"  {_describe(s)}" for s in sources]
    if len(sources) < 2:
        lines.append("  add two or more: rlhf-desktop arena add NAME --provider local ...")
    emit(data, as_json, lines)
    return 0


def arena_for_chat(settings: Settings, args: argparse.Namespace) -> Settings:
    """``chat --arena``: the settings with the arena on (refuses options that conflict)."""
    if args.provider:
        raise CliError("--provider does not go with --arena (each source names its own)")
    if args.n is not None:
        raise CliError("-n does not go with --arena (the sources' counts decide)")
    settings = replace(settings, arena=True)
    try:
        settings.validate()
    except ConfigError as exc:
        raise CliError(f"{exc}; add sources with `rlhf-desktop arena add`") from exc
    return settings
