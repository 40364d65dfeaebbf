"""Snapshots share the outbox byte budget and give way first; events go last, by severity then
age. Real SQLite files, FakeClock; the snapshot lane is the real ``LaneStore``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.domain import Severity
from edge_app.outbox import LaneStore, Outbox, OutboxReader
from edge_app.outbox.lane import row_weight
from edge_app.uplink import SnapshotSender, encode_batch, snapshot_row
from tests.factories import DEVICE, make_event

JPEG_BYTES = 10_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def lane(db: Path) -> Iterator[LaneStore]:
    with LaneStore(db, "snapshots", max_rows=1000) as store:
        yield store


def open_outbox(db: Path, clock: FakeClock, max_bytes: int) -> Outbox:
    return Outbox(
        db, clock=clock, device=DEVICE, max_bytes=max_bytes, max_age_s=86400.0,
        encoder=encode_batch,
    )  # fmt: skip


def event_size(clock: FakeClock) -> int:
    """Bytes one stored make_event() body takes (they all have the same length)."""
    return len(json.dumps(make_event(clock).with_seq(1).to_json(), separators=(",", ":")))


def snap(event_id: str, weight: int) -> str:
    """A snapshot row whose weight (body length + JPEG bytes) is exactly ``weight`` bytes."""
    jpeg = weight
    for _ in range(3):  # the digits of the size change the body's length; settle it
        jpeg = weight - len(snapshot_row(event_id, "f.jpg", jpeg))
    body = snapshot_row(event_id, "f.jpg", jpeg)
    assert len(body) + jpeg == weight
    return body


def queued_ids(lane: LaneStore) -> list[str]:
    return [json.loads(row.body)["event_id"] for row in lane.peek(1000)]


def test_a_snapshot_row_weighs_its_jpeg_and_old_rows_only_their_body(lane: LaneStore) -> None:
    new = snapshot_row("e1", "dock/e1.jpg", JPEG_BYTES)
    old = snapshot_row("e0", "dock/e0.jpg")  # a row written before sizes were recorded
    assert json.loads(new) == {"event_id": "e1", "file": "dock/e1.jpg", "bytes": JPEG_BYTES}
    assert "bytes" not in json.loads(old)
    lane.add([(1.0, old), (2.0, new)])
    assert lane.held_bytes() == len(old) + len(new) + JPEG_BYTES
    assert lane.stats().bytes == lane.held_bytes()


def test_rows_stored_before_weights_were_kept_weigh_their_body(db: Path) -> None:
    body = snapshot_row("e0", "dock/e0.jpg")
    with sqlite3.connect(db) as conn:  # the lane table as files written before had it
        conn.execute(
            "CREATE TABLE lane_rows (id INTEGER PRIMARY KEY AUTOINCREMENT, lane TEXT NOT NULL,"
            " ts REAL NOT NULL, body TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO lane_rows (lane, ts, body) VALUES ('snapshots', 1.0, ?)", (body,))
    conn.close()
    with LaneStore(db, "snapshots") as lane:
        assert lane.held_bytes() == len(body)
        lane.add([(2.0, snapshot_row("e1", "dock/e1.jpg", JPEG_BYTES))])
        assert lane.held_bytes() == len(body) + row_weight(
            snapshot_row("e1", "dock/e1.jpg", JPEG_BYTES)
        )
        assert lane.shed(1) == len(body)  # the old row goes first and frees its length
        assert lane.stats().dropped == 1
        assert lane.stats().bytes == lane.held_bytes() > JPEG_BYTES


def test_bodies_that_are_not_json_objects_weigh_their_length(db: Path) -> None:
    with LaneStore(db, "logs") as logs:
        bodies = ['[1,"sent \\"bytes\\": 5"]', 'not json "bytes": 7', '{"bytes":"9"}']
        logs.add([(1.0, body) for body in bodies])
        assert logs.held_bytes() == sum(len(b) for b in bodies)


def test_snapshots_are_shed_oldest_first_before_any_event(
    db: Path, lane: LaneStore, clock: FakeClock
) -> None:
    size = event_size(clock)
    # Room for 10 events (and a few bytes: seq 10 and 11 take one more digit), or fewer events
    # and snapshots that weigh 2 events each.
    budget = 10 * size + 20
    with open_outbox(db, clock, budget) as box:
        box.share_budget(lane)
        for i in range(4):
            lane.add([(clock.time(), snap(f"s{i}", 2 * size))])
            clock.advance(1.0)
        assert box.fit_budget() == 0  # 4 snapshots fit
        for _ in range(4):
            box.enqueue(make_event(clock, severity=Severity.LOW))
            clock.advance(1.0)
        stats = box.stats()
        assert stats.depth == 4  # no event was evicted: the oldest snapshot made room
        assert stats.dropped == 0
        assert stats.bytes + lane.held_bytes() <= budget
        assert queued_ids(lane) == ["s1", "s2", "s3"]
        assert lane.stats().dropped == 1
        # Snapshots keep giving way; once none is left, events go: low first, oldest first.
        for _ in range(7):
            box.enqueue(make_event(clock, severity=Severity.HIGH))
            clock.advance(1.0)
        assert queued_ids(lane) == []
        assert lane.stats().dropped == 4
        stats = box.stats()
        assert stats.bytes <= budget
        assert stats.dropped == 1  # one low event, only once no snapshot was left
        batch = box.lease(100, 131_072)
        assert batch is not None
        assert batch.dropped == {"intrusion": {"low": 1}}
        assert batch.first_seq == 2  # the oldest low event went
        severities = [json.loads(body)["severity"] for body in batch.events]
        assert severities == ["low"] * 3 + ["high"] * 7


def test_fit_budget_never_evicts_events_for_a_snapshot(
    db: Path, lane: LaneStore, clock: FakeClock
) -> None:
    size = event_size(clock)
    with open_outbox(db, clock, 5 * size) as box:
        box.share_budget(lane)
        for _ in range(5):
            box.enqueue(make_event(clock))
        lane.add([(clock.time(), snapshot_row("big", "dock/big.jpg", JPEG_BYTES))])
        freed = box.fit_budget()
        assert freed >= JPEG_BYTES
        assert lane.stats().rows == 0
        assert lane.stats().dropped == 1
        assert box.stats().depth == 5
        assert box.stats().dropped == 0


def test_without_a_shared_spill_snapshots_are_outside_the_budget(
    db: Path, lane: LaneStore, clock: FakeClock
) -> None:
    with open_outbox(db, clock, 2 * event_size(clock)) as box:
        lane.add([(clock.time(), snapshot_row("s", "dock/s.jpg", JPEG_BYTES))])
        assert box.fit_budget() == 0
        box.enqueue(make_event(clock))
        assert lane.stats().rows == 1


def test_status_shows_the_snapshot_lane_and_its_budget_drops(
    db: Path, lane: LaneStore, clock: FakeClock
) -> None:
    size = event_size(clock)
    with open_outbox(db, clock, 4 * size + 20) as box:
        box.share_budget(lane)
        lane.add([(clock.time(), snap(f"s{i}", size)) for i in range(3)])
        for _ in range(3):
            box.enqueue(make_event(clock))
    with OutboxReader(db) as reader:
        summary = reader.summary()
    snapshots = summary.lanes["snapshots"]
    assert snapshots["dropped"] == 2
    assert snapshots["rows"] == 1
    assert snapshots["bytes"] == lane.held_bytes()
    assert summary.depth == 3


def test_shedding_a_row_keeps_its_jpeg_and_the_sender_reads_old_and_new_rows(
    tmp_path: Path, db: Path, lane: LaneStore, clock: FakeClock
) -> None:
    root = tmp_path / "snapshots"
    root.mkdir()
    for name in ("old", "new", "shed"):
        (root / f"{name}.jpg").write_bytes(b"\xff\xd8 tiny jpeg stand-in")
    lane.add([(1.0, snapshot_row("shed", "shed.jpg", JPEG_BYTES))])
    assert lane.shed(1) >= JPEG_BYTES
    assert (root / "shed.jpg").exists()  # local retention owns the file
    lane.add([(2.0, snapshot_row("old", "old.jpg")), (3.0, snapshot_row("new", "new.jpg", 21))])
    sender = SnapshotSender(lane, root, topic_prefix="edge-app/cam-001")
    first = sender.next_publish()
    assert first is not None
    assert first.topic == "edge-app/cam-001/snapshots/old"
    sender.delivered(first)
    second = sender.next_publish()
    assert second is not None
    assert second.topic == "edge-app/cam-001/snapshots/new"


def test_the_lane_keeps_its_weight_and_row_count_without_rescanning(tmp_path: Path) -> None:
    """The mirrored COUNT/SUM agree with a fresh scan after every kind of change."""
    db = tmp_path / "o.db"

    def fresh() -> tuple[int, int]:
        with LaneStore(db, "snapshots") as other:
            return other.held_bytes(), other.stats().rows

    with LaneStore(db, "snapshots", max_rows=6) as lane:
        assert lane.held_bytes() == 0
        steps: list[Callable[[], object]] = [
            lambda: lane.add([(float(i), snapshot_row(f"e{i}", f"c/{i}.jpg", 1000 + i))
                              for i in range(4)]),
            lambda: lane.shed(1500),  # two rows
            lambda: lane.add([(9.0, snapshot_row("e9", "c/9.jpg", 5000))]),
            lambda: lane.delete([lane.peek(1)[0].id]),
            lambda: lane.add([(float(i), snapshot_row(f"f{i}", "c/f.jpg", 70)) for i in range(6)]),
            lambda: lane.drop_older_than(3.0),
            lambda: lane.add([(20.0, snapshot_row("g", "c/g.jpg", 1))]),
        ]  # fmt: skip
        for step in steps:
            step()
            assert (lane.held_bytes(), lane.stats().rows) == fresh()
        assert lane.stats().rows == 4  # trimmed to max_rows, then the old ones dropped
