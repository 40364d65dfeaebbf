"""Clock sanity for stored items: boot id, and correcting UTC times after a clock sync.

Many devices have no battery-backed clock: they boot with a wall time years off and step it
when NTP syncs. Each stored item keeps its monotonic time (or the offset ``wall - mono``) and the
boot id beside the UTC time it was given, so ``wall - mono`` is the clock offset it was recorded
under. ``ClockWatch`` says when to correct: the current offset moved by more than
``CLOCK_STEP_S`` (the clock was stepped), or the OS has just raised its "synchronised" flag
(then items more than ``SYNC_TOLERANCE_S`` off are corrected). Only a plausible wall clock
(2020 or later) is corrected towards. A corrected event says so (``time_corrected: true``,
``ts_recorded``: the time it first carried). Items of an earlier boot cannot be corrected this
way (monotonic time restarts at boot) and are left as they are.
"""

from __future__ import annotations

__all__ = [
    "CLOCK_STEP_S",
    "PLAUSIBLE_WALL",
    "SYNC_TOLERANCE_S",
    "ClockWatch",
    "boot_id_for",
    "correct_times",
    "read_boot_id",
]

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from edge_app.atrest import Sealer
from edge_app.clock import Clock, SystemClock
from edge_app.domain import format_utc
from edge_app.errors import EncryptionError
from edge_app.outbox.sealed import open_body, seal_body

# Offsets that differ by more than this many seconds mean the wall clock was stepped. Lower
# would mistake the jitter of reading two clocks, or a leap second, for a step.
CLOCK_STEP_S = 30.0
# Once the OS says the clock is synchronised, items recorded this far off are corrected.
SYNC_TOLERANCE_S = 1.0
# 2020-01-01T00:00:00Z: a wall clock before this has not been set yet.
PLAUSIBLE_WALL = 1_577_836_800.0
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_COMPACT = (",", ":")


def _parse_utc(ts: str) -> float:
    """Unix seconds of an ISO 8601 UTC stamp as ``format_utc`` writes it."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def read_boot_id() -> str:
    """This boot's id (Linux ``/proc/sys/kernel/random/boot_id``), or ``""`` if unknown."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def boot_id_for(clock: Clock) -> str:
    """The boot id to tag items with: this boot's with the system clock, none with any other.
    A fake clock's times must never be "corrected" against the real one's."""
    return read_boot_id() if isinstance(clock, SystemClock) else ""


class ClockWatch:
    """Tells a store when to correct the times it holds. Not thread-safe: its owner's lock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._offset: float | None = None  # wall - mono at the last correction, seconds
        self._synced: bool | None = None  # the OS flag as last read

    def recheck(self) -> None:
        """Compare stored times at the next ``check`` even if the clock has not moved: items
        that were out of reach (leased) when it last did are back."""
        self._offset = None

    def check(self, now_mono: float, now_wall: float) -> float | None:
        """None when stored times stand; else the tolerance (s) beyond which an item's
        recorded offset must be corrected to the current ``now_wall - now_mono``."""
        if now_wall < PLAUSIBLE_WALL:
            return None  # the clock is not set yet: nothing to correct towards
        offset = now_wall - now_mono
        synced = self._clock.synchronized()
        became_synced = synced is True and self._synced is not True
        self._synced = synced
        stepped = self._offset is None or abs(offset - self._offset) > CLOCK_STEP_S
        if not (stepped or became_synced):
            return None
        self._offset = offset
        return SYNC_TOLERANCE_S if became_synced else CLOCK_STEP_S


def correct_times(
    conn: sqlite3.Connection,
    boot_id: str,
    offset: float,
    step_s: float = CLOCK_STEP_S,
    *,
    sealer: Sealer | None = None,
) -> tuple[int, int]:
    """Re-time the unleased events of ``boot_id`` recorded under another clock offset.

    ``offset`` is the current ``wall - mono`` in seconds. Runs inside the caller's transaction.
    An encrypted body is decrypted with ``sealer`` and stored encrypted again; one that does
    not decrypt is left as it is (leasing parks it). Returns ``(events corrected, change in
    stored body bytes)``, bytes in clear.
    """
    if not boot_id:
        return 0, 0
    rows = conn.execute(
        "SELECT seq, id, created_mono, created_wall, bytes, body FROM events WHERE boot_id = ?"
        " AND lease_id IS NULL AND abs((created_wall - created_mono) - ?) > ?",
        (boot_id, offset, step_s),
    ).fetchall()
    delta = fixed = 0
    for seq, event_id, mono, wall, size, stored in rows:
        try:
            body = open_body(sealer, event_id, stored)
        except EncryptionError:
            continue
        # The event's ts is its frame's time, not the time it was stored: shift it by the
        # clock step seen between then and now rather than replacing it.
        shift = offset - (float(wall) - float(mono))
        doc = json.loads(body)
        recorded = str(doc.get("ts", ""))
        doc.setdefault("ts_recorded", recorded)
        doc["ts"] = format_utc(_parse_utc(recorded) + shift)
        doc["time_corrected"] = True
        new_body = json.dumps(doc, separators=_COMPACT)
        delta += len(new_body) - int(size)
        rewritten = seal_body(sealer, event_id, new_body, like=stored)
        conn.execute(
            "UPDATE events SET created_wall = ?, bytes = ?, body = ? WHERE seq = ?",
            (float(wall) + shift, len(new_body), rewritten, seq),
        )
        fixed += 1
    return fixed, delta
