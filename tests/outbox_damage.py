"""Real outbox files, written by the ``Outbox`` class, and damage done to them at chosen pages.

SQLite itself is the oracle: ``dbstat`` says which page belongs to which table (so the damage
lands where a test means it to), and per-row reads of the damaged file say which rows SQLite can
still read (so what a salvage must deliver is not computed by the code under test).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.atrest import Sealer
from edge_app.clock import FakeClock
from edge_app.outbox import LaneStore, Outbox
from edge_app.outbox.sealed import open_body
from edge_app.uplink import encode_batch
from tests.factories import DEVICE, make_event

PAGE = 4096
GARBAGE = b"\xa5"  # not a b-tree page type, not UTF-8


@dataclass(frozen=True)
class Written:
    """What ``write_outbox`` stored: every event's JSON by seq, lane rows, pending drops."""

    events: dict[int, dict[str, Any]]
    lane_rows: int
    drops: int
    dead_letters: int

    @property
    def ids(self) -> set[str]:
        return {e["id"] for e in self.events.values()}


def open_box(
    path: Path,
    clock: FakeClock | None = None,
    sealer: Sealer | None = None,
    progress: Callable[[], None] | None = None,
) -> Outbox:
    return Outbox(
        path,
        clock=clock or FakeClock(),
        device=DEVICE,
        max_bytes=256 << 20,
        max_age_s=1e9,
        encoder=encode_batch,
        sealer=sealer,
        progress=progress,
    )


def write_outbox(
    path: Path,
    n: int = 300,
    *,
    big_every: int = 50,
    wall: float = 1_790_000_000.0,
    sealer: Sealer | None = None,
) -> Written:
    """``n`` events (every ``big_every``-th one 6 KB, so it spills to overflow pages), two
    dead-lettered ones (so drops are pending), metrics and snapshot lane rows; closed. The
    events are stamped from ``wall`` (Unix s) on, half a second apart; with ``sealer``, their
    bodies are stored encrypted (``Written.events`` holds them decrypted)."""
    clock = FakeClock(wall=wall)
    with open_box(path, clock, sealer) as box:
        for i in range(n):
            pad = "z" * (6000 if big_every and i % big_every == 7 else 400 + i % 300)
            box.enqueue(make_event(clock, extra={"pad": pad, "i": i}))
            clock.advance(0.5)
        batch = box.lease(2, 1 << 20)
        assert batch is not None
        box.dead_letter(batch, "test: refused by the broker")
        rows = _rows(path, "SELECT seq, id, body FROM events")
        events = {int(seq): json.loads(open_body(sealer, id_, body)) for seq, id_, body in rows}
    with LaneStore(path, "metrics", clock=clock) as metrics:
        metrics.add([(wall + i, json.dumps({"n": "Frames", "v": i})) for i in range(40)])
    with LaneStore(path, "snapshots") as snaps:
        snaps.add([(wall, json.dumps({"event_id": "x", "file": "a.jpg", "bytes": 10}))])
    return Written(events, lane_rows=41, drops=2, dead_letters=2)


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def pages(path: Path, table: str, kind: str | None = None) -> list[int]:
    """Page numbers of ``table``'s b-tree (``kind``: 'leaf', 'internal' or 'overflow'), with
    the WAL applied (read-only: nothing is checkpointed)."""
    sql = "SELECT pageno, pagetype FROM dbstat WHERE name = ?"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sorted(p for p, t in conn.execute(sql, (table,)) if kind is None or t == kind)
    finally:
        conn.close()


def wal_pages(path: Path) -> list[int]:
    """The page number of each frame of ``path``'s WAL, in order (frame 1 first)."""
    data = path.with_name(path.name + "-wal").read_bytes()
    step = 24 + PAGE
    starts = range(32, len(data) - step + 1, step)
    return [int.from_bytes(data[at : at + 4], "big") for at in starts]


def damage_wal_frame(path: Path, frame: int) -> None:
    """Garbage in the page image of WAL frame ``frame`` (from 1): its checksum fails."""
    with path.with_name(path.name + "-wal").open("r+b") as fh:
        fh.seek(32 + (frame - 1) * (24 + PAGE) + 24 + 1000)
        fh.write(GARBAGE * 64)


def damage(path: Path, page: int, *, start: int = 0, length: int = PAGE) -> None:
    """Overwrite ``length`` bytes of page ``page`` (from 1) from offset ``start`` with garbage."""
    with path.open("r+b") as fh:
        fh.seek((page - 1) * PAGE + start)
        fh.write(GARBAGE * length)


def readable(path: Path, seqs: Iterable[int]) -> set[int]:
    """The seqs SQLite can still read, one row at a time, from the damaged file (no WAL)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    ok = set()
    try:
        for seq in seqs:
            try:
                row = conn.execute("SELECT id, body FROM events WHERE seq = ?", (seq,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if row is not None:
                ok.add(seq)
    finally:
        conn.close()
    return ok


def drain(box: Outbox) -> list[dict[str, Any]]:
    """Lease and acknowledge until the outbox is empty; every event body delivered, in order."""
    out: list[dict[str, Any]] = []
    while (batch := box.lease(100, 1 << 20)) is not None:
        out.extend(json.loads(body) for body in batch.events)
        box.ack(batch)
    return out


_WRITER = """
import os, sys
from pathlib import Path
from tests.outbox_damage import open_box
from tests.factories import make_event
from edge_app.clock import FakeClock
clock = FakeClock()
box = open_box(Path(sys.argv[1]), clock)
for i in range(int(sys.argv[2])):
    box.enqueue(make_event(clock, extra={"pad": "w" * 600, "i": i}))
    clock.advance(0.5)
os._exit(0)  # like kill -9: the WAL stays, nothing is checkpointed
"""


def write_with_wal(path: Path, n: int) -> None:
    """``n`` events committed by a process that then dies: they live in ``<path>-wal``."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", _WRITER, str(path), str(n)], check=True, cwd=root)
    path.with_name(path.name + "-shm").unlink(missing_ok=True)  # as after a reboot
