"""SQLite storage: open + migrate (db), numbered migrations, and `Repository`: one typed
repository per aggregate on one connection."""

from rlhf_desktop.storage.db import DatabaseError, connect
from rlhf_desktop.storage.repo import Repository, StorageError

__all__ = ["DatabaseError", "Repository", "StorageError", "connect"]
