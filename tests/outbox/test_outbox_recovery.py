"""Outbox self-repair: damaged files salvaged and kept aside (never deleted), seq never repeats
(the salvage itself, page by page: test_outbox_salvage.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.errors import OutboxError
from edge_app.outbox import Outbox
from edge_app.outbox.recovery import SEQ_BLOCK, SeqReservation, quarantine
from edge_app.uplink import encode_batch
from tests.factories import DEVICE, make_event

MB = 2**20


def open_box(path: Path, clock: FakeClock) -> Outbox:
    return Outbox(
        path, clock=clock, device=DEVICE, max_bytes=64 * MB, max_age_s=86400.0,
        encoder=encode_batch,
    )  # fmt: skip


def fill(path: Path, clock: FakeClock, n: int) -> int:
    with open_box(path, clock) as box:
        for _ in range(n):
            box.enqueue(make_event(clock, extra={"pad": "z" * 2000}))
        return box.stats().last_seq


def test_a_damaged_database_is_salvaged_kept_aside_and_seq_continues(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "outbox.db"
    last = fill(db, clock, 40)
    # Scribble over pages 3-7: the indexes, meta and drops; every event row stays readable.
    data = bytearray(db.read_bytes())
    data[8192 : 8192 + 20000] = b"\xff" * 20000
    db.write_bytes(bytes(data))

    with open_box(db, clock) as box:
        moved = box.recovered_from
        assert moved is not None
        assert moved.name.startswith("outbox.db.corrupt-")
        assert moved.read_bytes() == bytes(data)  # kept for analysis, never modified
        assert box.stats().depth == 40  # every event salvaged
        event = box.enqueue(make_event(clock))
    assert event.seq is not None
    assert event.seq > last
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_sound_database_is_not_touched(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "outbox.db"
    fill(db, clock, 3)
    with open_box(db, clock) as box:
        assert box.recovered_from is None
        assert box.stats().depth == 3
        assert box.enqueue(make_event(clock)).seq == 4  # no gap in normal operation
    assert list(tmp_path.glob("*.corrupt-*")) == []


def test_a_lost_database_still_never_repeats_a_seq(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "outbox.db"
    last = fill(db, clock, 5)
    for side in tmp_path.glob("outbox.db*"):
        if not side.name.endswith(".seq"):
            side.unlink()
    with open_box(db, clock) as box:
        seq = box.enqueue(make_event(clock)).seq
    assert seq is not None
    assert last < seq <= last + SEQ_BLOCK + 1


def test_reservation_writes_once_per_block(tmp_path: Path) -> None:
    path = tmp_path / "x.seq"
    seqs = SeqReservation(path, block=10)
    seqs.ensure(1)
    assert path.read_text() == "11\n"
    seqs.ensure(11)
    assert path.read_text() == "11\n"  # covered: no write
    seqs.ensure(12)
    assert SeqReservation(path, block=10).reserved == 22


def test_quarantine_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    db.write_bytes(b"one")
    first = quarantine(db, wall=0.0)
    db.write_bytes(b"two")
    second = quarantine(db, wall=0.0)
    assert first != second
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
    with pytest.raises(OutboxError, match="move it away by hand"):
        quarantine(db, wall=0.0)  # nothing left to move
