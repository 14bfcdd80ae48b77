"""Open the SQLite database (WAL, foreign keys, durable commits) and migrate it once."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from pathlib import Path

from rlhf_desktop import config
from rlhf_desktop.storage.migrations import MIGRATIONS

log = logging.getLogger(__name__)


class DatabaseError(Exception):
    """The database cannot be used; the message says what to do."""


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning("SQLite refused WAL mode (got %s)", mode)
    # FULL: a commit is on disk (WAL fsynced) before commit() returns, so a label whose save
    # returned survives a crash of the process or the machine.
    conn.execute("PRAGMA synchronous = FULL")


def _migrate(conn: sqlite3.Connection) -> list[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    newest = max((m[0] for m in MIGRATIONS), default=0)
    unknown = [v for v in applied if v > newest]
    if unknown:
        raise DatabaseError(
            f"The database was written by a newer rlhf-desktop (schema {max(unknown)}); "
            "update the app or choose another data folder."
        )
    done: list[int] = []
    for version, name, sql in MIGRATIONS:
        if version in applied:
            continue
        # One script, one transaction: the migration and its record land together or not
        # at all (executescript commits what was pending first, then runs the script).
        record = ("INSERT INTO schema_migrations (version, name, applied_at) VALUES "
                  f"({int(version)}, '{name.replace(chr(39), chr(39) * 2)}', {time.time()!r});")
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;\n{record}\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done.append(version)
        log.info("applied migration %d: %s", version, name)
    return done


def _quarantine(path: Path, reason: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.corrupt-{stamp}")
    shutil.copy2(path, backup)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            shutil.copy2(side, backup.with_name(backup.name + suffix))
    log.error("database %s is unusable (%s); a copy is kept at %s", path, reason, backup)
    return backup


def connect(path: Path | None = None) -> sqlite3.Connection:
    """Open (creating when missing) and migrate the database; one connection per thread.

    A file that is not a database, or fails its quick check, is never overwritten: a copy is
    kept beside it and :class:`DatabaseError` says where.
    """
    db_file = config.db_path() if path is None else path
    db_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(db_file, isolation_level=None, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise DatabaseError(f"Cannot open the database {db_file}: {exc}") from exc
    try:
        _configure(conn)
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise sqlite3.DatabaseError(str(ok))
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise DatabaseError(
                f"The database {db_file} is locked by another program: {exc}. "
                "Close the other rlhf-desktop window or wait for it to finish."
            ) from exc
        backup = _quarantine(db_file, str(exc))
        raise DatabaseError(
            f"The database {db_file} is damaged ({exc}). Nothing was overwritten; a copy is "
            f"at {backup}. Move the damaged file away to start a new database, or restore a "
            "backup."
        ) from exc
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest applied migration."""
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)
