"""SQLite storage: open + migrate (db), numbered migrations, typed repository."""

from rlhf_desktop.storage.db import DatabaseError, connect
from rlhf_desktop.storage.repo import Repository, StorageError

__all__ = ["DatabaseError", "Repository", "StorageError", "connect"]
