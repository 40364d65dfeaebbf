"""The durable outbox: seq, lease/ack/release, restarts, batch limits, capacity and drops."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.domain import Severity
from edge_app.errors import OutboxError
from edge_app.outbox import Batch, Outbox
from edge_app.uplink import decode_batch, encode_batch
from tests.factories import DEVICE, make_event

MB = 1024 * 1024


OpenOutbox = Callable[..., Outbox]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_outbox(tmp_path: Path, clock: FakeClock) -> Iterator[OpenOutbox]:
    opened: list[Outbox] = []

    def _open(max_bytes: int = 64 * MB, max_age_s: float = 14 * 86400.0) -> Outbox:
        box = Outbox(
            tmp_path / "outbox.db",
            clock=clock,
            device=DEVICE,
            max_bytes=max_bytes,
            max_age_s=max_age_s,
            encoder=encode_batch,
        )
        opened.append(box)
        return box

    yield _open
    for box in opened:
        box.close()


def seqs_of(batch: Batch) -> list[int]:
    return [json.loads(body)["seq"] for body in batch.events]


def test_seq_increments_by_one_and_survives_reopen(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    box = open_outbox()
    assert [box.enqueue(make_event(clock)).seq for _ in range(3)] == [1, 2, 3]
    # Deliver everything: rows are gone, but seq must not restart or repeat.
    batch = box.lease(100, 131072)
    assert batch is not None
    box.ack(batch)
    assert box.stats().depth == 0
    box.close()

    box = open_outbox()
    assert box.stats().last_seq == 3
    assert box.enqueue(make_event(clock)).seq == 4


def test_enqueue_is_committed_when_it_returns(
    open_outbox: OpenOutbox, clock: FakeClock, tmp_path: Path
) -> None:
    box = open_outbox()
    event = make_event(clock, extra={"note": "ünïcode"})
    stored = box.enqueue(event)
    assert stored.seq == 1
    assert stored.id == event.id
    # A separate connection sees the committed row: nothing waits in a buffer.
    with sqlite3.connect(tmp_path / "outbox.db") as other:
        (body,) = other.execute("SELECT body FROM events WHERE id = ?", (event.id,)).fetchone()
        (journal,) = other.execute("PRAGMA journal_mode").fetchone()
    assert json.loads(body) == stored.to_json()
    assert " " not in body.replace("ünïcode", "")  # compact separators
    assert journal == "wal"


def test_enqueue_rejects_reused_events(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox()
    stored = box.enqueue(make_event(clock))
    with pytest.raises(OutboxError, match="already has seq"):
        box.enqueue(stored)
    with pytest.raises(OutboxError, match="already stored"):
        box.enqueue(dataclasses.replace(stored, seq=None))
    with pytest.raises(OutboxError, match="cannot be encoded as JSON"):
        box.enqueue(make_event(clock, extra={"bad": object()}))
    stats = box.stats()
    assert (stats.depth, stats.last_seq) == (1, 1)  # failed enqueues left no trace
    assert box.enqueue(make_event(clock)).seq == 2


def test_ack_deletes_only_the_acked_batch(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox()
    for _ in range(6):
        box.enqueue(make_event(clock))
    first = box.lease(3, 131072)
    second = box.lease(3, 131072)
    assert first is not None
    assert second is not None
    assert seqs_of(first) == [1, 2, 3]
    assert seqs_of(second) == [4, 5, 6]
    assert box.lease(3, 131072) is None  # everything is out

    box.ack(second)
    stats = box.stats()
    assert (stats.depth, stats.leased) == (3, 3)
    box.release(first)
    again = box.lease(10, 131072)
    assert again is not None
    assert seqs_of(again) == [1, 2, 3]


def test_release_redelivers_the_same_events(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox()
    ids = [box.enqueue(make_event(clock)).id for _ in range(4)]
    batch = box.lease(10, 131072)
    assert batch is not None
    box.release(batch)
    assert box.stats().leased == 0
    again = box.lease(10, 131072)
    assert again is not None
    assert again.batch_id != batch.batch_id
    assert [json.loads(b)["id"] for b in again.events] == ids
    # A late ack of the released batch deletes nothing that is out under the new lease.
    box.ack(batch)
    assert box.stats().depth == 4
    box.ack(again)
    assert box.stats().depth == 0


def test_leases_are_released_on_reopen(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox()
    for _ in range(5):
        box.enqueue(make_event(clock))
    batch = box.lease(3, 131072)
    assert batch is not None
    box.close()  # "crash" between publish and ack

    box = open_outbox()
    stats = box.stats()
    assert (stats.depth, stats.leased) == (5, 0)
    again = box.lease(10, 131072)
    assert again is not None
    assert seqs_of(again) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("max_bytes", [1200, 2000, 5000])
def test_batches_respect_the_byte_limit(
    open_outbox: OpenOutbox, clock: FakeClock, max_bytes: int
) -> None:
    box = open_outbox()
    for i in range(40):
        box.enqueue(make_event(clock, extra={"pad": "x" * (i * 7 % 150)}))
    seen: list[int] = []
    while (batch := box.lease(500, max_bytes)) is not None:
        assert len(batch.payload) <= max_bytes
        doc = decode_batch(batch.payload)
        seqs = [event["seq"] for event in doc["events"]]
        assert (doc["first_seq"], doc["last_seq"]) == (seqs[0], seqs[-1])
        assert (batch.first_seq, batch.last_seq) == (seqs[0], seqs[-1])
        assert doc["batch_id"] == batch.batch_id
        seen += seqs
        # Full: the next event would not have fitted (the size estimate may keep up to two
        # bytes spare, as it assumes the last candidate's seq digits).
        if seqs[-1] < 40:
            assert len(batch.payload) + _body_size(box, seqs[-1] + 1) + 1 > max_bytes - 2
        box.ack(batch)
    assert seen == list(range(1, 41))


def _body_size(box: Outbox, seq: int) -> int:
    with sqlite3.connect(box.path) as conn:
        (size,) = conn.execute("SELECT bytes FROM events WHERE seq = ?", (seq,)).fetchone()
    return int(size)


def test_batches_respect_the_event_limit(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox()
    for _ in range(7):
        box.enqueue(make_event(clock))
    sizes = []
    while (batch := box.lease(3, 131072)) is not None:
        sizes.append(len(batch))
    assert sizes == [3, 3, 1]


def test_an_event_larger_than_a_batch_goes_alone(
    open_outbox: OpenOutbox, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    box = open_outbox()
    box.enqueue(make_event(clock, extra={"pad": "y" * 3000}))
    box.enqueue(make_event(clock))
    batch = box.lease(500, 2000)
    assert batch is not None
    assert seqs_of(batch) == [1]
    assert len(batch.payload) > 2000
    assert "sending it alone" in caplog.text
    rest = box.lease(500, 2000)
    assert rest is not None
    assert seqs_of(rest) == [2]


def test_full_outbox_evicts_lowest_severity_then_oldest(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    plan = [Severity.HIGH, Severity.LOW, Severity.MEDIUM, Severity.LOW, Severity.HIGH]
    plan += [Severity.HIGH, Severity.HIGH]
    events = [make_event(clock, severity=s, rule=f"r-{s.value}") for s in plan]
    sizes = [
        len(json.dumps(e.with_seq(seq).to_json(), separators=(",", ":")))
        for seq, e in enumerate(events, start=1)
    ]
    capacity = sum(sizes[:5]) - sizes[1]  # the first five do not fit by exactly seq 2's size
    assert sizes[2] + sizes[3] >= sizes[5] + sizes[6]  # so evicting 4 and 3 makes room later
    box = open_outbox(max_bytes=capacity)
    for event in events[:5]:
        box.enqueue(event)
    # The oldest low (seq 2) went first.
    batch = box.lease(500, 131072)
    assert batch is not None
    assert seqs_of(batch) == [1, 3, 4, 5]
    assert batch.dropped == {"r-low": {"low": 1}}
    box.release(batch)

    box.enqueue(events[5])
    box.enqueue(events[6])
    batch = box.lease(500, 131072)
    assert batch is not None
    # Then the other low (4), then the medium (3): lowest severity before age.
    assert seqs_of(batch) == [1, 5, 6, 7]
    assert batch.dropped == {"r-low": {"low": 2}, "r-medium": {"medium": 1}}
    assert box.stats().bytes <= capacity


def test_dropped_counts_appear_once(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox(max_age_s=60.0)
    box.enqueue(make_event(clock, rule="door", severity=Severity.LOW))
    box.enqueue(make_event(clock, rule="door", severity=Severity.HIGH))
    clock.advance(120.0)
    box.enqueue(make_event(clock, rule="zone"))  # the first two are now too old
    assert box.stats().dropped == 2

    first = box.lease(1, 131072)
    assert first is not None
    assert first.dropped == {"door": {"high": 1, "low": 1}}
    assert decode_batch(first.payload)["dropped"] == {"door": {"high": 1, "low": 1}}
    # Released: the counts come back and ride in the next batch instead.
    box.release(first)
    second = box.lease(1, 131072)
    assert second is not None
    assert second.dropped == first.dropped
    box.ack(second)
    assert box.stats().dropped == 0

    box.enqueue(make_event(clock))
    third = box.lease(10, 131072)
    assert third is not None
    assert third.dropped == {}
    assert decode_batch(third.payload)["dropped"] == {}


def test_drops_are_reported_even_with_no_events_left(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    box = open_outbox(max_age_s=10.0)
    box.enqueue(make_event(clock, rule="door"))
    clock.advance(60.0)
    batch = box.lease(10, 131072)
    assert batch is not None
    doc = decode_batch(batch.payload)
    assert doc["events"] == []
    assert (doc["first_seq"], doc["last_seq"]) == (None, None)
    assert doc["dropped"] == {"door": {"medium": 1}}
    box.ack(batch)
    assert box.lease(10, 131072) is None


def test_leased_events_are_not_evicted(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox(max_age_s=10.0)
    box.enqueue(make_event(clock))
    batch = box.lease(10, 131072)
    assert batch is not None
    clock.advance(60.0)
    box.enqueue(make_event(clock))  # triggers the age check
    stats = box.stats()
    assert (stats.depth, stats.dropped) == (2, 0)
    box.ack(batch)
    assert box.stats().depth == 1


def test_concurrent_enqueues_get_distinct_consecutive_seqs(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    box = open_outbox()
    seqs: list[int] = []
    lock = threading.Lock()

    def produce() -> None:
        for _ in range(50):
            seq = box.enqueue(make_event(clock)).seq
            assert seq is not None
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=produce) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(seqs) == list(range(1, 151))


def test_stats(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    box = open_outbox()
    empty = box.stats()
    assert (empty.depth, empty.bytes, empty.oldest_wall, empty.last_seq) == (0, 0, None, 0)
    first_wall = clock.time()
    for _ in range(3):
        box.enqueue(make_event(clock))
        clock.advance(1.0)
    batch = box.lease(2, 131072)
    assert batch is not None
    stats = box.stats()
    assert (stats.depth, stats.last_seq, stats.leased, stats.pending) == (3, 3, 2, 1)
    assert stats.oldest_wall == first_wall
    assert stats.bytes == sum(_body_size(box, seq) for seq in (1, 2, 3))
    assert stats.leased_bytes == sum(len(body) for body in batch.events)


def test_misuse_and_broken_files_give_clear_errors(
    open_outbox: OpenOutbox, clock: FakeClock, tmp_path: Path
) -> None:
    box = open_outbox()
    box.close()
    with pytest.raises(OutboxError, match="is closed"):
        box.enqueue(make_event(clock))

    plain = Outbox(tmp_path / "plain.db", clock=clock, device=DEVICE, max_bytes=MB, max_age_s=1.0)
    with plain:
        plain.enqueue(make_event(clock))
        with pytest.raises(OutboxError, match=r"encoder=edge_app\.uplink\.encode_batch"):
            plain.lease(10, 131072)

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with Outbox(junk, clock=clock, device=DEVICE, max_bytes=MB, max_age_s=1.0) as fresh:
        assert fresh.recovered_from is not None  # moved aside (see test_outbox_recovery.py)
        assert fresh.recovered_from.read_bytes().startswith(b"this is not a database")

    with pytest.raises(ValueError, match="max_bytes must be > 0"):
        Outbox(tmp_path / "x.db", clock=clock, device=DEVICE, max_bytes=0, max_age_s=1.0)
