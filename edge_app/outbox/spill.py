"""``Spill``: lower-priority data that shares the outbox byte budget and gives way to events.

The snapshot lane (a ``LaneStore``) is the one shipped. ``Outbox`` asks it to shed before it
evicts any event, and when the disk is full; it is a protocol so the outbox never needs to know
what the data is (the uplink, which sends it, sits above the outbox).
"""

from __future__ import annotations

__all__ = ["Spill", "disk_full", "make_room", "shed_all_for_disk"]

import logging
import sqlite3
from typing import Protocol

from edge_app.errors import OutboxError
from edge_app.outbox.schema import errorname

_log = logging.getLogger(__name__)


class Spill(Protocol):
    """Data counted against ``outbox.max_bytes`` that is dropped before any event is."""

    def held_bytes(self) -> int:
        """Bytes it holds against the budget now."""
        ...

    def shed(self, excess: int) -> int:
        """Drop its oldest items until at least ``excess`` bytes are freed (or it is empty),
        counting them as dropped; returns the bytes freed. Raises ``OutboxError`` on failure."""
        ...


def make_room(spill: Spill | None, events_bytes: int, max_bytes: int) -> int:
    """Shed ``spill`` so that ``events_bytes`` (the stored events plus the one being added)
    and the spill fit in ``max_bytes``; returns the bytes the events may use: ``max_bytes``
    less what the spill still holds.

    Call it outside the events transaction: the spill writes through its own connection,
    which would wait on that transaction's write lock.
    """
    if spill is None:
        return max_bytes
    try:
        held = spill.held_bytes()
        excess = events_bytes + held - max_bytes
        if excess > 0:
            held = max(0, held - spill.shed(excess))
    except OutboxError as exc:
        # Events keep the whole budget rather than give way to pictures we cannot drop.
        _log.warning("outbox: could not shed the snapshot lane: %s", exc)
        return max_bytes
    return max_bytes - held


def shed_all_for_disk(spill: Spill | None) -> bool:
    """Empty ``spill`` to free pages for an event the full disk refused; True if it did.

    Only its rows go: the files they name (JPEGs) belong to local retention and stay.
    """
    if spill is None:
        return False
    try:
        held = spill.held_bytes()
        if held <= 0:
            return False
        freed = spill.shed(held)
    except OutboxError as exc:
        _log.warning("outbox: the disk is full and the snapshot lane cannot shed: %s", exc)
        return False
    _log.warning(
        "outbox: the disk is full; dropped the snapshot lane's queue (%d bytes) to store an "
        "event (the JPEG files stay, under local retention)",
        freed,
    )
    return True


def disk_full(exc: OutboxError) -> bool:
    """True if ``exc`` wraps SQLite's SQLITE_FULL (ENOSPC, or the file's size limit)."""
    cause = exc.__cause__
    return isinstance(cause, sqlite3.Error) and errorname(cause) == "SQLITE_FULL"
