"""The service's SQLite database: opened owner-only, because it holds templates, names and
booking references (galleries), tokens and the security audit.

Deleted rows are overwritten (``secure_delete``). The database file is created 0600
before SQLite opens it, and SQLite gives its WAL and
shared-memory files the database's permissions; an existing file with looser permissions
is tightened (and said so in the log).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger("gate.matcher")

MEMORY = ":memory:"


def _owner_only(path: Path) -> None:
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("database %s was readable by others (%o); now 0600", path, mode)


def open_db(path: Path | str) -> sqlite3.Connection:
    """A connection to ``path`` (or ``:memory:``), usable from several threads with a lock."""
    if str(path) == MEMORY:
        return sqlite3.connect(MEMORY, check_same_thread=False, timeout=30)
    path = Path(path)
    _owner_only(path)
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    # Deleted rows (retention) are overwritten, not left in free pages for a forensic read.
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA journal_mode=WAL")
    for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if companion.exists() and companion.stat().st_mode & 0o077:
            os.chmod(companion, 0o600)
    return db


__all__ = ["MEMORY", "open_db"]
