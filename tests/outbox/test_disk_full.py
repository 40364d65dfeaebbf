"""ENOSPC: a real, tiny tmpfs fills up under the outbox; it refuses events with a clear error,
keeps working for the drain side, and takes events again once space returns.

Needs root to mount a tmpfs; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.errors import OutboxError
from edge_app.outbox import LaneStore, Outbox
from edge_app.uplink import encode_batch, snapshot_row
from tests.factories import DEVICE, make_event


def test_disk_full_refuses_events_then_recovers_when_space_returns(small_fs: Path) -> None:
    clock = FakeClock()
    ballast = small_fs / "ballast"
    with Outbox(
        small_fs / "outbox.db",
        clock=clock,
        device=DEVICE,
        max_bytes=64 * 2**20,  # the filesystem, not the cap, is the limit here
        max_age_s=86400.0,
        encoder=encode_batch,
    ) as box:
        stored = refused = 0
        errors: list[str] = []
        with contextlib.suppress(OSError), open(ballast, "wb") as fh:
            fh.write(b"\0" * (2 * 2**20))  # fill the filesystem to the brim
        for _ in range(200):
            try:
                box.enqueue(make_event(clock, extra={"pad": "p" * 1500}))
                stored += 1
            except OutboxError as exc:
                refused += 1
                errors.append(str(exc))
        assert refused > 0
        assert any("disk is full" in e or "No space left" in e for e in errors), errors[:3]
        before = box.stats()
        assert before.depth == stored  # what was stored is intact

        ballast.unlink()  # space returns
        after = box.enqueue(make_event(clock))
        assert after.seq == before.last_seq + 1  # no seq burned by the refusals
        batch = box.lease(1000, 1 << 20)
        assert batch is not None
        box.ack(batch)
        assert box.stats().depth == 0
    with sqlite3.connect(small_fs / "outbox.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_disk_full_with_snapshots_queued_refuses_cleanly_then_recovers(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On SQLITE_FULL the outbox tries to drop the snapshot queue and store the event again.
    On a filesystem with no byte left that cannot work (in WAL mode the delete itself needs
    room), so the event is refused with a clear error; nothing is half done, and both work
    again once space returns."""
    clock = FakeClock()
    db = small_fs / "outbox.db"
    with (
        Outbox(
            db, clock=clock, device=DEVICE, max_bytes=64 * 2**20, max_age_s=86400.0,
            encoder=encode_batch,
        ) as box,
        LaneStore(db, "snapshots", max_rows=100_000) as lane,
    ):  # fmt: skip
        box.share_budget(lane)
        queued = 1500
        name = "dock/" + "n" * 200
        lane.add([(clock.time(), snapshot_row(f"e{i}", f"{name}{i}.jpg", 40_000)) for i in
                  range(queued)])  # fmt: skip
        box.enqueue(make_event(clock))  # takes a seq reservation (a file write) for later ones
        ballast = small_fs / "ballast"
        with contextlib.suppress(OSError), open(ballast, "wb") as fh:
            fh.write(b"\0" * (2 * 2**20))  # fill the filesystem to the brim
        errors: list[str] = []
        for _ in range(200):
            try:
                box.enqueue(make_event(clock, extra={"pad": "p" * 1500}))
            except OutboxError as exc:
                errors.append(str(exc))
                break
        assert errors, "the full disk took 200 events of 1.5 KB"
        assert "disk is full" in errors[0]
        assert "snapshot lane cannot shed" in caplog.text  # it tried, and said why not
        stats = lane.stats()
        assert stats.rows + stats.dropped == queued
        depth = box.stats().depth

        ballast.unlink()  # space returns
        box.enqueue(make_event(clock))
        assert box.stats().depth == depth + 1
        assert box.stats().dropped == 0
        lane.add([(clock.time(), snapshot_row("later", "dock/later.jpg", 40_000))])
        assert lane.stats().rows == stats.rows + 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
