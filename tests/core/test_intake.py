"""EventIntake, where events enter delivery: stored (seq), snapshot queued within the byte
budget, counted, the drain woken; a picture that cannot be queued never loses the event."""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.domain import Severity, SnapshotRef
from edge_app.errors import OutboxError
from edge_app.intake import EventIntake
from edge_app.outbox import LaneStore, Outbox
from edge_app.telemetry import Registry
from tests.factories import make_event

SNAP = SnapshotRef("dock/2026-09-21/x.jpg", "ab" * 32, 40_000)


def test_an_event_is_stored_queued_counted_and_announced(
    tmp_path: Path, clock: FakeClock, outbox: Outbox
) -> None:
    registry = Registry({"device": "cam-001"})
    woken: list[int] = []
    with LaneStore(tmp_path / "outbox.db", "snapshots") as lane:
        outbox.share_budget(lane)
        intake = EventIntake(
            outbox, registry=registry, snapshots=lane, wake=lambda: woken.append(1)
        )
        first = intake.accept(replace(make_event(clock, severity=Severity.HIGH), snapshot=SNAP))
        second = intake.accept(make_event(clock))  # no snapshot: nothing queued for it
        rows = lane.peek(10)
        held = lane.stats()
    assert (first.seq, second.seq) == (1, 2)
    assert outbox.stats().depth == 2
    assert [json.loads(r.body) for r in rows] == [
        {"event_id": first.id, "file": SNAP.file, "bytes": SNAP.bytes}
    ]
    assert held.bytes >= SNAP.bytes  # the JPEG weighs in the outbox byte budget
    counted = registry.counter("Events", "Count", rule="intrusion", severity="high")
    assert counted.value == 1
    assert registry.counter("Events", "Count", rule="intrusion", severity="medium").value == 1
    assert woken == [1, 1]


def test_a_snapshot_that_cannot_be_queued_keeps_its_event(
    tmp_path: Path, clock: FakeClock, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    with LaneStore(tmp_path / "outbox.db", "snapshots") as lane:
        # the lane's writes fail as on a full disk; the events table is not touched
        with closing(sqlite3.connect(tmp_path / "outbox.db")) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON lane_rows"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        intake = EventIntake(outbox, registry=Registry({}), snapshots=lane)
        with caplog.at_level(logging.WARNING, logger="edge_app.intake"):
            stored = intake.accept(replace(make_event(clock), snapshot=SNAP))
        assert lane.stats().rows == 0
    assert stored.seq == 1
    assert outbox.stats().depth == 1
    assert f"snapshot of event {stored.id} not queued for upload" in caplog.text


def test_an_event_that_cannot_be_stored_is_refused_and_nothing_else_happens(
    clock: FakeClock, outbox: Outbox
) -> None:
    registry = Registry({})
    woken: list[int] = []
    intake = EventIntake(outbox, registry=registry, wake=lambda: woken.append(1))
    outbox.close()
    with pytest.raises(OutboxError):
        intake.accept(make_event(clock))
    assert registry.counter("Events", "Count", rule="intrusion", severity="medium").value == 0
    assert woken == []
