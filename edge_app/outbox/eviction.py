"""Capacity and age eviction of undelivered events, inside the caller's transaction.

Order: lowest severity first, then oldest; never events out in a batch (they are on the wire;
the cap is exceeded until they are acked). Every eviction is counted per (rule, severity) for
the next batch's ``dropped``.
"""

from __future__ import annotations

__all__ = ["PLAUSIBLE_WALL", "evict_expired", "evict_over_capacity"]

from collections import Counter

from edge_app.outbox.tables import EventTables
from edge_app.outbox.timefix import PLAUSIBLE_WALL

# Age eviction looks at this many of the oldest rows per call; the rest wait for the next one.
_AGE_SCAN_LIMIT = 10_000
_EVICT_CHUNK = 256


def evict_over_capacity(tables: EventTables, max_bytes: int) -> int:
    """Evict events until their bytes are within ``max_bytes``; returns how many were evicted."""
    drops: Counter[tuple[str, int]] = Counter()
    while tables.bytes > max_bytes:
        victims = tables.conn.execute(
            "SELECT seq, rule, severity, bytes FROM events WHERE lease_id IS NULL"
            " ORDER BY severity, seq LIMIT ?",
            (_EVICT_CHUNK,),
        ).fetchall()
        chosen = []
        excess = tables.bytes - max_bytes
        for seq, rule, rank, size in victims:
            if excess <= 0:
                break
            chosen.append(seq)
            drops[(rule, rank)] += 1
            excess -= size
        if not chosen:
            # Everything left is out in batches; exceed the cap until those are acked.
            break
        tables.delete(chosen)
    tables.count_drops(drops, "the outbox is full (outbox.max_bytes)")
    return drops.total()


def evict_expired(tables: EventTables, now_wall: float, max_age_s: float) -> int:
    """Evict events stored more than ``max_age_s`` seconds before ``now_wall`` (Unix s), oldest
    first, skipping stamps from before the clock was set; returns how many were evicted."""
    cutoff = now_wall - max_age_s
    chosen: list[int] = []
    drops: Counter[tuple[str, int]] = Counter()
    cursor = tables.conn.execute(
        "SELECT seq, rule, severity, created_wall FROM events"
        " WHERE lease_id IS NULL ORDER BY seq LIMIT ?",
        (_AGE_SCAN_LIMIT,),
    )
    for seq, rule, rank, wall in cursor:
        if wall < PLAUSIBLE_WALL:
            continue  # stamped before the clock was set: its age says nothing
        if wall >= cutoff:
            break
        chosen.append(seq)
        drops[(rule, rank)] += 1
    cursor.close()
    if chosen:
        tables.delete(chosen)
    tables.count_drops(drops, f"older than outbox.max_age ({max_age_s:g} s)")
    return drops.total()
