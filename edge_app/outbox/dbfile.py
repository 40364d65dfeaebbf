"""Opening the outbox file for writing: a 0700 folder, a 0600 database, 0600 -wal and -shm.

SQLite creates a database file with mode 0644 less the umask, and its -wal and -shm files
with the database file's own mode (``findCreateFileMode`` in SQLite's unix VFS). So the
database is created here first, 0600, before SQLite opens it, and every file SQLite adds
beside it follows. A database, -wal or -shm left group/other-readable by an older version is
tightened at open. The store (``schema``) and the side lanes (``lane``) both open the file
through ``connect``; the read-only view (``reader``) never creates anything.
"""

from __future__ import annotations

__all__ = ["connect"]

import contextlib
import os
import sqlite3
from pathlib import Path

from edge_app.files import PRIVATE_FILE, loose_bits, private_dir, private_file


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the database ``path`` (autocommit: every transaction is an explicit
    ``BEGIN IMMEDIATE``/``COMMIT``; usable from several threads under the caller's lock;
    waits up to 5 s for another connection's write lock). The file is 0600 and its folder
    exists (created 0700). The caller closes the connection. Raises ``OSError`` (folder or
    file) or ``sqlite3.Error``, for the caller to turn into an ``OutboxError``."""
    private_dir(path.parent)
    private_file(path)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if loose_bits(side.stat().st_mode):
                os.chmod(side, PRIVATE_FILE)
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
