"""Event bodies at rest: stored in clear (TEXT, compact JSON) or sealed (BLOB, ``Sealer``).

What is encrypted: the ``body`` column, the whole event as sent (labels, boxes, scores, zone,
snapshot and clip names, extra keys). What stays in clear, because the store works on it
without the key: ``seq``, ``id``, ``severity``, ``rule``, the stored times, ``boot_id``,
``lease_id``, and ``bytes``, the *clear* body's length, so byte budgets and batch packing are
the same with or without encryption (the file grows by at most ``OVERHEAD_BYTES`` per sealed
event beyond it, less where a page's slack absorbs it). A sealed body's context is its event
id: a body copied over another row does not decrypt. Drop counts, meta and the side lanes are
not encrypted; dead-lettered rows keep the form they had.

A store may mix both forms (rows stored before encryption was turned on, or after it was
turned off); SQLite's ``typeof(body)`` tells them apart, and the sealed form also carries its
magic. Opening a store that holds sealed rows without the key, or with another key, is refused
before anything is changed (``check_store_key``).
"""

from __future__ import annotations

__all__ = ["CONFIG_KEY", "check_store_key", "first_sealed", "open_body", "seal_body"]

import sqlite3
from pathlib import Path

from edge_app.atrest import Sealer, sealed_key_id
from edge_app.errors import EncryptionError


def _context(event_id: str) -> bytes:
    return b"edge-app/event\0" + event_id.encode()


def seal_body(
    sealer: Sealer | None, event_id: str, body: str, *, like: str | bytes | None = None
) -> str | bytes:
    """What to store for the compact JSON ``body`` of event ``event_id``: sealed bytes when
    ``sealer`` seals new items, else ``body`` itself. A rewrite of a stored body passes it as
    ``like`` to keep its form: a sealed one stays sealed even if new items are not sealed."""
    seal = sealer is not None and (sealer.seal_new if like is None else isinstance(like, bytes))
    if not seal or sealer is None:
        return body
    return sealer.seal(body.encode(), _context(event_id))


def open_body(sealer: Sealer | None, event_id: str, stored: str | bytes) -> str:
    """The compact JSON of a stored body; ``EncryptionError`` if it is sealed and cannot be
    opened (no key, another key, or altered or moved from another row)."""
    if isinstance(stored, str):
        return stored
    if sealer is None:
        raise EncryptionError(f"event {event_id} is encrypted and no key is configured")
    return sealer.open(stored, _context(event_id), what=f"event {event_id}").decode()


def first_sealed(conn: sqlite3.Connection) -> tuple[int, bytes] | None:
    """``(seq, body)`` of the oldest stored event whose body is sealed, or None. Scans up to
    it (the whole table for a store in clear; read at open only, docs/benchmarks.md)."""
    row = conn.execute(
        "SELECT seq, body FROM events WHERE typeof(body) = 'blob' ORDER BY seq LIMIT 1"
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


CONFIG_KEY = "set encryption.key_file (or encryption.credential) to the key they were written with"
"""How a daemon is given the key (the default ``how`` of ``check_store_key``)."""


def check_store_key(
    conn: sqlite3.Connection, path: Path, sealer: Sealer | None, *, how: str = CONFIG_KEY
) -> None:
    """Refuse (``EncryptionError``) a store holding sealed events that ``sealer`` cannot open:
    none given, or another key (told by the oldest sealed event's key id). Reads only; ``how``
    tells the user how to give the key. A row altered in place is not refused here: leasing
    parks it (see ``leasing``), so one bad row cannot keep the device from starting."""
    first = first_sealed(conn)
    if first is None:
        return
    seq, body = first
    if sealer is None:
        (n,) = conn.execute("SELECT COUNT(*) FROM events WHERE typeof(body) = 'blob'").fetchone()
        raise EncryptionError(
            f"outbox {path} holds {n} encrypted event(s) (the oldest is seq {seq}) and no key "
            f"was given: {how}; nothing was changed"
        )
    stored_id = sealed_key_id(body)
    if stored_id != sealer.key_id:
        raise EncryptionError(
            f"wrong key for outbox {path}: its encrypted events (the oldest is seq {seq}) were "
            f"written with key id {stored_id}, but {sealer.source} is key id {sealer.key_id}; "
            f"{how}; nothing was changed"
        )
