"""Clock sanity for stored events: boot id, and correcting UTC times after a clock sync.

Many devices have no battery-backed clock: they boot with a wall time years off and step it
when NTP syncs. Each stored event keeps its monotonic time and the boot id beside the UTC time
it was given, so ``wall - mono`` is the clock offset it was recorded under. When the current
offset is plausible (the wall clock says 2020 or later) and differs from a stored event's by more
than ``CLOCK_STEP_S``, that event was recorded under a wrong clock in this same boot: its time
is shifted by the difference of the two offsets, and the event says so (``time_corrected: true``,
``ts_recorded``: the time it first carried). Events of an earlier boot cannot be corrected this
way (monotonic time restarts at boot) and are left as they are.
"""

from __future__ import annotations

__all__ = ["CLOCK_STEP_S", "PLAUSIBLE_WALL", "correct_times", "read_boot_id"]

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from edge_app.domain import format_utc

# Offsets that differ by more than this many seconds mean the wall clock was stepped.
CLOCK_STEP_S = 30.0
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


def correct_times(
    conn: sqlite3.Connection, boot_id: str, offset: float, step_s: float = CLOCK_STEP_S
) -> tuple[int, int]:
    """Re-time the unleased events of ``boot_id`` recorded under another clock offset.

    ``offset`` is the current ``wall - mono`` in seconds. Runs inside the caller's transaction.
    Returns ``(events corrected, change in stored body bytes)``.
    """
    if not boot_id:
        return 0, 0
    rows = conn.execute(
        "SELECT seq, created_mono, created_wall, bytes, body FROM events WHERE boot_id = ?"
        " AND lease_id IS NULL AND abs((created_wall - created_mono) - ?) > ?",
        (boot_id, offset, step_s),
    ).fetchall()
    delta = 0
    for seq, mono, wall, size, body in rows:
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
        conn.execute(
            "UPDATE events SET created_wall = ?, bytes = ?, body = ? WHERE seq = ?",
            (float(wall) + shift, len(new_body), new_body, seq),
        )
    return len(rows), delta
