"""Leasing: the oldest unleased events packed into one batch payload under a byte limit.

Runs inside the caller's transaction (``Outbox.lease``). Pending drop counts ride along; an
event too large for any MQTT payload, or one whose stored text was damaged in place, is parked
in the dead-letter lane instead of blocking the queue forever, and so is an encrypted body that
does not decrypt (altered, or moved from another row): it stays in the file, never sendable,
and is reported as a drop. Bodies are decrypted here, so the batch carries them in clear; sizes
come from the ``bytes`` column (the clear length), so packing is the same for both forms.
"""

from __future__ import annotations

__all__ = ["lease_batch"]

import logging
import sqlite3

from edge_app.atrest import Sealer
from edge_app.errors import EncryptionError, OutboxError
from edge_app.ids import new_ulid
from edge_app.outbox.batch import IOT_CORE_MAX_PAYLOAD_BYTES, Batch, BatchEncoder
from edge_app.outbox.deadletter import park
from edge_app.outbox.sealed import open_body
from edge_app.outbox.tables import EventTables

_log = logging.getLogger(__name__)


def lease_batch(
    tables: EventTables,
    encoder: BatchEncoder,
    device: str,
    now_wall: float,
    *,
    max_events: int,
    max_bytes: int,
    sealer: Sealer | None = None,
) -> Batch | None:
    """Lease at most ``max_events`` events whose payload is at most ``max_bytes`` bytes (an
    event too large to fit alone goes alone); ``None`` when there is nothing to send.
    ``now_wall`` (Unix s) seeds the batch id; ``sealer`` opens encrypted bodies."""
    while True:
        try:
            rows: list[tuple[int, int, str | bytes, str]] = tables.conn.execute(
                "SELECT seq, bytes, body, id FROM events WHERE lease_id IS NULL ORDER BY seq"
                " LIMIT ?",
                (max_events,),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if not _undecodable(exc):
                raise
            _park_undecodable(tables, max_events, now_wall)
            continue
        dropped: dict[str, dict[str, int]] = {}
        for rule, severity, n in tables.conn.execute(
            "SELECT rule, severity, n FROM drops WHERE lease_id = ''"
        ):
            dropped.setdefault(rule, {})[severity] = int(n)
        if not rows and not dropped:
            return None
        batch_id = new_ulid(now_wall)
        taken = rows
        if rows:
            # Upper bound: the real last_seq has at most as many digits as the last candidate's.
            budget = max_bytes - len(
                encoder(device, batch_id, (), dropped, first_seq=rows[0][0], last_seq=rows[-1][0])
            )
            used = count = 0
            for _, size, _, _ in rows:
                used += size + (1 if count else 0)
                if used > budget:
                    break
                count += 1
            if count == 0:
                seq, size, _, _ = rows[0]
                if size + (max_bytes - budget) > IOT_CORE_MAX_PAYLOAD_BYTES:
                    # No publish can ever carry it (IoT Core refuses payloads over 128 KB):
                    # park it in the dead-letter lane, reported as a drop, instead of
                    # retrying it forever and blocking everything behind it.
                    park(
                        tables,
                        [seq],
                        f"{size} bytes, over the {IOT_CORE_MAX_PAYLOAD_BYTES}-byte"
                        " MQTT payload limit",
                        now_wall,
                    )
                    continue
                _log.warning(
                    "event seq %d is %d bytes, more than a %d-byte batch can hold; sending it "
                    "alone",
                    seq,
                    size,
                    max_bytes,
                )
                count = 1
            taken = rows[:count]
        bodies = _open_bodies(tables, taken, sealer, now_wall)
        if bodies is None:
            continue  # a body that does not decrypt was parked: pack again without it
        return _take(tables, encoder, device, batch_id, taken=taken, bodies=bodies, dropped=dropped)


def _open_bodies(
    tables: EventTables,
    taken: list[tuple[int, int, str | bytes, str]],
    sealer: Sealer | None,
    now_wall: float,
) -> tuple[str, ...] | None:
    """The clear bodies of ``taken``; None if some did not decrypt (those are parked)."""
    bodies: list[str] = []
    complete = True
    for seq, _, body, event_id in taken:
        try:
            bodies.append(open_body(sealer, event_id, body))
        except EncryptionError as exc:
            # Retrying cannot make it decrypt: park it (kept in the file), reported as a drop.
            park(tables, [seq], f"cannot be decrypted: {exc}", now_wall)
            complete = False
    return tuple(bodies) if complete else None


def _undecodable(exc: sqlite3.OperationalError) -> bool:
    """True if ``exc`` is Python's sqlite3 failing to decode stored text as UTF-8."""
    return str(exc).startswith("Could not decode to UTF-8")


def _park_undecodable(tables: EventTables, limit: int, now_wall: float) -> None:
    """Park the events among the next ``limit`` whose text is damaged in place (bytes changed
    inside an intact page, which the startup check cannot see): left in the queue, they would
    fail every lease and hold back every event behind them. Counted as drops."""
    seqs = [
        int(seq)
        for (seq,) in tables.conn.execute(
            "SELECT seq FROM events WHERE lease_id IS NULL ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
    ]
    bad = []
    for seq in seqs:
        try:
            tables.conn.execute(
                "SELECT id, rule, body FROM events WHERE seq = ?", (seq,)
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if not _undecodable(exc):
                raise
            bad.append(seq)
    if not bad:  # nothing to isolate: the error came from elsewhere
        raise OutboxError("the outbox holds text that is not UTF-8 and it cannot be found")
    park(tables, bad, "its stored text is damaged (not UTF-8)", now_wall, raw=True)


def _take(
    tables: EventTables,
    encoder: BatchEncoder,
    device: str,
    batch_id: str,
    *,
    taken: list[tuple[int, int, str | bytes, str]],
    bodies: tuple[str, ...],
    dropped: dict[str, dict[str, int]],
) -> Batch:
    first_seq = taken[0][0] if taken else None
    last_seq = taken[-1][0] if taken else None
    payload = encoder(device, batch_id, bodies, dropped, first_seq=first_seq, last_seq=last_seq)
    if taken:
        # The taken rows are exactly the unleased rows up to last_seq (oldest first).
        tables.conn.execute(
            "UPDATE events SET lease_id = ? WHERE lease_id IS NULL AND seq <= ?",
            (batch_id, last_seq),
        )
    tables.conn.execute("UPDATE drops SET lease_id = ? WHERE lease_id = ''", (batch_id,))
    tables.leased += len(taken)
    tables.leased_bytes += sum(size for _, size, _, _ in taken)
    return Batch(batch_id, first_seq, last_seq, bodies, dropped, payload)
