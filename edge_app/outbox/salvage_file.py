"""Salvaging a damaged outbox file by hand (``edge-app outbox salvage``).

For a file the daemon set aside (``outbox.db.corrupt-<time>``) when its own salvage could not
be written, a copy from another card, or a file moved aside by hand: every readable row goes
into an outbox whose daemon is stopped (the live outbox, or a new file), exactly as at startup
(``salvage.salvage_into``), and the daemon delivers the events on its next start.

The target is locked exclusively for the whole copy, so a running daemon (or one started
meanwhile) and this command never write it at once. The source is only read.
"""

from __future__ import annotations

__all__ = ["salvage_file"]

import sqlite3
from pathlib import Path

from edge_app.errors import OutboxError
from edge_app.outbox.salvage import SalvageReport, salvage_into, salvaged_key
from edge_app.outbox.schema import errorname, open_db, outbox_error


def salvage_file(
    source: Path, target: Path, *, create: bool = False, again: bool = False
) -> SalvageReport:
    """Copy every readable row of the damaged outbox ``source`` into the outbox ``target``.

    ``target`` must exist unless ``create`` (then it must not). A file salvaged into
    ``target`` before is refused unless ``again``: events still waiting there are never copied
    twice (same ``id``), but events delivered since would be sent again. Every refusal is an
    ``OutboxError`` that says what to do; nothing is written then.
    """
    if not source.is_file():
        raise OutboxError(f"no file to salvage at {source}: give the damaged outbox file")
    if create and target.exists():
        raise OutboxError(f"{target} exists: leave out --create to salvage into it")
    if not create and not target.is_file():
        raise OutboxError(
            f"no outbox at {target}: check --db or outbox.path in --config, or pass --create "
            "to salvage into a new file"
        )
    if target.exists() and source.resolve() == target.resolve():
        raise OutboxError(
            f"{source} is the outbox itself: salvage the file that was set aside "
            f"({target.name}.corrupt-<time>) into it"
        )
    conn = open_db(target)
    try:
        _lock(conn, target)
        key = salvaged_key(source)
        if not again and conn.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone():
            raise OutboxError(
                f"{source} was salvaged into {target} before: its events still waiting there "
                "would not be copied twice, but those delivered since would be sent again; "
                "pass --again to copy it anyway"
            )
        try:
            return salvage_into(
                source, conn, problem="salvaged with `edge-app outbox salvage`", kept_at=source
            )
        except OSError as exc:
            raise OutboxError(f"cannot read {source}: {exc}") from exc
        except sqlite3.Error as exc:
            raise outbox_error(target, "salvage", exc) from exc
    finally:
        conn.close()


def _lock(conn: sqlite3.Connection, target: Path) -> None:
    """Hold ``target`` exclusively until ``conn`` closes, or refuse: another process has it."""
    try:
        conn.execute("PRAGMA busy_timeout = 500")
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")  # in exclusive locking mode the lock outlives the transaction
    except sqlite3.Error as exc:
        if errorname(exc) in {"SQLITE_BUSY", "SQLITE_LOCKED"}:
            raise OutboxError(
                f"{target} is in use (is edge-app running?): stop it first, e.g. "
                "`systemctl stop edge-app`, then salvage, then start it again"
            ) from exc
        raise outbox_error(target, "lock", exc) from exc
