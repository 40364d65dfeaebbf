"""Uplink lanes: events, then snapshots, then metrics, through one rate limiter and window.

A real SQLite outbox and lanes, the shipped InMemoryTransport and a FakeClock; the drain is
driven by its own thread where PUBACKs are held back, and by ``flush`` otherwise.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_app.clock import FakeClock
from edge_app.errors import UplinkError
from edge_app.outbox import LaneStore, Outbox
from edge_app.telemetry import MetricDatum, MetricsLaneSender, pack_emf
from edge_app.uplink import (
    Backoff,
    DrainLoop,
    InMemoryTransport,
    LanePublish,
    RateLimiter,
    SnapshotSender,
    snapshot_row,
)
from edge_app.uplink.ratelimit import RATE_WINDOW_S
from tests.factories import flush_until, flush_until_stalled, make_event, wait_until

PREFIX = "edge-app/cam-001"
EVENTS = f"{PREFIX}/events"
METRICS = f"{PREFIX}/metrics"
WAIT_S = 10.0


def datum(ts: float, name: str = "FramesProcessed") -> MetricDatum:
    dims = (("camera", "dock"), ("device", "cam-001"))
    return MetricDatum(name, dims, ts, "Count", 6, 60.0, 8.0, 12.0, "counter")


def store_minutes(lane: LaneStore, minutes: int, *, start: float = 1_764_000_000.0) -> None:
    """``minutes`` one-minute aggregates of two metrics each: one EMF document per minute."""
    lane.add(
        [
            (start + 60 * m, datum(start + 60 * m, name).to_json())
            for m in range(minutes)
            for name in ("FramesProcessed", "Detections")
        ]
    )


def jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    assert ok
    return bytes(buf.tobytes())


@contextmanager
def lanes_and_drain(
    tmp_path: Path, transport: InMemoryTransport, clock: FakeClock, **kwargs: Any
) -> Iterator[tuple[Outbox, LaneStore, LaneStore, SnapshotSender, MetricsLaneSender, DrainLoop]]:
    db = tmp_path / "outbox.db"
    with (
        Outbox(db, clock=clock, device="cam-001", max_bytes=2**26, max_age_s=86400.0) as outbox,
        LaneStore(db, "snapshots", max_rows=100) as snaps,
        LaneStore(db, "metrics") as metrics,
    ):
        snap_sender = SnapshotSender(snaps, tmp_path, topic_prefix=PREFIX)
        metric_sender = MetricsLaneSender(metrics, topic=METRICS, namespace="EdgeApp")
        options: dict[str, Any] = {
            "stop": threading.Event(),
            "max_wait_s": 0.0,
            "window": 5,
            "retry": Backoff(1.0, 5.0, random.Random(0)),
            "lanes": [snap_sender, metric_sender],
        }
        options.update(kwargs)
        drain = DrainLoop(outbox, transport, topic=EVENTS, clock=clock, **options)
        yield outbox, snaps, metrics, snap_sender, metric_sender, drain


def add_snapshot(outbox: Outbox, snaps: LaneStore, root: Path, clock: FakeClock) -> str:
    event = outbox.enqueue(make_event(clock))
    (root / f"{event.id}.jpg").write_bytes(jpeg())
    snaps.add([(event.wall, snapshot_row(event.id, f"{event.id}.jpg"))])
    return event.id


def kinds(transport: InMemoryTransport) -> list[str]:
    return [m.topic.split("/")[2] for m in transport.published]


@pytest.mark.slow
def test_events_go_first_then_snapshots_then_metrics(tmp_path: Path) -> None:
    clock = FakeClock()
    transport = InMemoryTransport()
    transport.connect()
    with lanes_and_drain(tmp_path, transport, clock) as (outbox, snaps, metrics, _, ms, drain):
        store_minutes(metrics, 4)
        ids = [add_snapshot(outbox, snaps, tmp_path, clock) for _ in range(3)]
        # flush returns once the events are out: drive it on until the lanes are acknowledged
        assert flush_until(drain, lambda: snaps.stats().rows == metrics.stats().rows == 0)
        order = kinds(transport)
        assert order == ["events"] + ["snapshots"] * 3 + ["metrics"] * 4
        snap_topics = [m.topic for m in transport.published if "/snapshots/" in m.topic]
        assert [t.rsplit("/", 1)[1] for t in snap_topics] == ids  # oldest first
        docs = [json.loads(m.payload) for m in transport.published if m.topic == METRICS]
        stamps = [d["_aws"]["Timestamp"] for d in docs]
        assert stamps == sorted(stamps)  # oldest minute first, original timestamps kept
        assert {"FramesProcessed", "Detections"} <= docs[0].keys()
        assert ms.sent == 8
        assert drain.stats().lane_publishes == 7


def test_a_new_event_overtakes_a_metrics_backlog(tmp_path: Path) -> None:
    clock = FakeClock()
    transport = InMemoryTransport(auto_ack=False)
    transport.connect()
    stop = threading.Event()
    with lanes_and_drain(tmp_path, transport, clock, window=5, stop=stop) as (
        outbox, _, metrics, *_, drain,
    ):  # fmt: skip
        store_minutes(metrics, 40)
        thread = threading.Thread(target=drain.run, daemon=True)
        thread.start()
        try:
            # The lanes fill the window but one slot: it is kept for events.
            assert wait_until(lambda: transport.pending == 4)
            assert kinds(transport) == ["metrics"] * 4
            outbox.enqueue(make_event(clock))
            drain.notify()
            # Sent next, before any metrics PUBACK arrived.
            assert wait_until(lambda: "events" in kinds(transport))
            assert kinds(transport) == ["metrics"] * 4 + ["events"]
            assert transport.pending == 5
            # While an event is waiting, no lane is asked, even when PUBACKs free slots.
            outbox.enqueue(make_event(clock))
            transport.ack_pending(4)  # the metrics only; the event batch stays unacknowledged
            assert wait_until(lambda: kinds(transport).count("events") == 2)
            assert kinds(transport)[5] == "events"

            def metrics_drained() -> bool:  # then the metrics backlog drains
                transport.ack_pending()
                clock.advance(1.0)  # the rate limiter's window moves on
                drain.notify()
                return metrics.stats().rows == 0

            assert wait_until(metrics_drained)
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(WAIT_S)
        assert kinds(transport).count("metrics") >= 40
        assert outbox.stats().depth == 0


def test_lanes_leave_a_quarter_of_the_rate_caps_to_events(tmp_path: Path) -> None:
    clock = FakeClock()  # frozen: the limiter's one-second window never moves on
    transport = InMemoryTransport()
    transport.connect()
    limiter = RateLimiter(clock=clock, publishes_per_s=8, bytes_per_s=64 * 1024)
    with lanes_and_drain(tmp_path, transport, clock, window=100, limiter=limiter) as (
        outbox, _, metrics, *_, drain,
    ):  # fmt: skip
        store_minutes(metrics, 30)
        flush_until_stalled(drain, transport)
        assert kinds(transport) == ["metrics"] * 6  # 8 per second less the reserve of 2
        outbox.enqueue(make_event(clock))
        assert drain.flush(WAIT_S) is True  # the reserve lets the event out at once
        assert kinds(transport) == ["metrics"] * 6 + ["events"]
        flush_until_stalled(drain, transport)
        assert len(transport.published) == 7  # nothing above the cap in the frozen second
        assert metrics.stats().rows == 2 * 30 - 2 * 6


def test_lanes_share_a_cap_of_one_publish_a_second(tmp_path: Path) -> None:
    # max_publishes_per_s: 1 is valid config; a reserve for events would leave the lanes
    # nothing, and the drain used to raise UplinkError out of its loop instead of sending.
    clock = FakeClock()
    transport = InMemoryTransport()
    transport.connect()
    limiter = RateLimiter(clock=clock, publishes_per_s=1, bytes_per_s=64 * 1024)
    with lanes_and_drain(tmp_path, transport, clock, window=100, limiter=limiter) as (
        outbox, _, metrics, *_, drain,
    ):  # fmt: skip
        store_minutes(metrics, 3)
        flush_until_stalled(drain, transport)
        assert kinds(transport) == ["metrics"]  # one publish in the frozen second
        outbox.enqueue(make_event(clock))
        clock.advance(RATE_WINDOW_S)
        assert flush_until(drain, lambda: outbox.stats().depth == 0)
        assert kinds(transport)[:2] == ["metrics", "events"]  # the event goes first


@pytest.mark.slow
def test_side_lanes_respect_the_byte_cap_across_lanes(tmp_path: Path) -> None:
    clock = FakeClock()
    transport = InMemoryTransport()
    sent: list[tuple[float, int]] = []  # (FakeClock time, payload bytes) of every publish
    transport.subscribe("#", lambda topic, payload: sent.append((clock.monotonic(), len(payload))))
    transport.connect()
    limiter = RateLimiter(clock=clock, publishes_per_s=100, bytes_per_s=4096)
    with lanes_and_drain(tmp_path, transport, clock, window=100, limiter=limiter) as (
        outbox, snaps, metrics, *_, drain,
    ):  # fmt: skip
        store_minutes(metrics, 60)
        for _ in range(3):
            add_snapshot(outbox, snaps, tmp_path, clock)
        for _ in range(400):
            drain.flush(0.0)
            clock.advance(0.05)
            if not metrics.stats().rows:
                break
        assert metrics.stats().rows == 0
        assert kinds(transport)[:4] == ["events"] + ["snapshots"] * 3
    assert len(sent) == 1 + 3 + 60
    for start, _ in sent:
        assert sum(size for at, size in sent if start <= at < start + 1.0) <= 4096


def test_a_refused_metrics_publish_keeps_its_rows_and_is_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    transport = InMemoryTransport()
    transport.connect()
    with lanes_and_drain(tmp_path, transport, clock) as (outbox, _, metrics, _, ms, drain):
        store_minutes(metrics, 1)
        transport.fail_next(1, 0x97)  # quota exceeded
        flush_until_stalled(drain, transport)
        assert len(transport.rejected) == 1
        assert metrics.stats().rows == 2  # kept
        assert transport.published == []  # backing off: nothing sent before the retry delay
        assert drain.stats().lane_failures == 1
        outbox.enqueue(make_event(clock))  # the lanes' pause is theirs: events still go
        assert drain.flush(WAIT_S) is True
        assert [m.topic for m in transport.published] == [EVENTS]
        transport.published.clear()
        clock.advance(6.0)  # past the longest backoff delay
        flush_until_stalled(drain, transport)
        assert [m.topic for m in transport.published] == [METRICS]
        assert transport.published[0].payload == transport.rejected[0].payload  # same document
        assert metrics.stats().rows == 0
        assert ms.sent == 2


def test_a_lost_link_keeps_lane_rows_and_sends_them_after_reconnect(tmp_path: Path) -> None:
    clock = FakeClock()
    transport = InMemoryTransport(auto_ack=False)
    transport.connect()
    stop = threading.Event()
    with lanes_and_drain(tmp_path, transport, clock, stop=stop) as (
        outbox, snaps, metrics, *_, drain,
    ):  # fmt: skip
        store_minutes(metrics, 2)
        add_snapshot(outbox, snaps, tmp_path, clock)
        thread = threading.Thread(target=drain.run, daemon=True)
        thread.start()
        try:
            # the event batch, then (none pending) the snapshot and both metrics documents
            assert wait_until(lambda: transport.pending == 4)
            assert kinds(transport) == ["events", "snapshots", "metrics", "metrics"]
            transport.set_online(False)  # the PUBACKs never come
            assert wait_until(lambda: drain.stats().lane_failures == 3)
            assert snaps.stats().rows == 1
            assert metrics.stats().rows == 4
            assert outbox.stats().depth == 1
            transport.set_online(True)
            assert wait_until(lambda: transport.pending == 4)  # all sent again
            transport.ack_pending()
            assert wait_until(lambda: not drain.backlog())
        finally:
            stop.set()
            thread.join(WAIT_S)
        assert snaps.stats().rows == 0
        assert metrics.stats().rows == 0
        assert outbox.stats().depth == 0


def test_pack_emf_stays_within_the_payload_and_metric_limits() -> None:
    data = [datum(60.0, f"M{i:03d}") for i in range(250)] + [datum(120.0, "Late")]
    packed = pack_emf(data, "EdgeApp", max_bytes=4096)
    carried = sorted(i for _, indices in packed for i in indices)
    assert carried == list(range(len(data)))  # every datum exactly once
    for payload, indices in packed:
        doc = json.loads(payload)
        assert len(payload) <= 4096
        assert len(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]) == len(indices) <= 100
        assert {data[i].ts for i in indices} == {doc["_aws"]["Timestamp"] / 1000}
    assert json.loads(packed[-1][0])["Late"] == 60.0  # the later minute comes last
    roomy = pack_emf(data, "EdgeApp", max_bytes=10**6)
    assert [len(i) for _, i in roomy] == [100, 100, 50, 1]  # EMF: <= 100 metrics a document


def test_metrics_sender_skips_rows_it_can_never_send(tmp_path: Path) -> None:
    with LaneStore(tmp_path / "o.db", "metrics") as lane:
        lane.add([(1.0, "not json"), (2.0, datum(60.0, "X" * 3000).to_json())])
        store_minutes(lane, 1)
        sender = MetricsLaneSender(lane, topic=METRICS, namespace="EdgeApp", max_bytes=2048)
        first = sender.next_publish()
        assert first is not None
        assert json.loads(first.payload)["FramesProcessed"] == 60.0
        assert sender.next_publish() is None  # the two good rows are in one document
        assert sender.skipped == 2
        assert lane.stats().rows == 2  # the bad rows are gone, the good ones wait for PUBACK
        sender.failed(first)
        assert sender.next_publish() == first  # offered again, unchanged
        sender.delivered(first)
        assert not sender.waiting()
    with pytest.raises(ValueError, match="max_bytes >= 1024"):
        MetricsLaneSender(lane, topic=METRICS, namespace="EdgeApp", max_bytes=10)


def test_snapshot_rows_with_extra_keys_are_sent(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg())
    with LaneStore(tmp_path / "o.db", "snapshots") as lane:
        body = json.dumps({"event_id": "E1", "file": "a.jpg", "bytes": 1234})
        lane.add([(1.0, body)])
        sender = SnapshotSender(lane, tmp_path, topic_prefix=PREFIX)
        publish = sender.next_publish()
        assert publish is not None
        assert publish.topic == f"{PREFIX}/snapshots/E1"
        assert sender.next_publish() is None  # the one row is handed out already
        sender.delivered(publish)
        assert lane.stats().rows == 0
        assert sender.missing_files == 0


def test_a_lane_publish_carries_rows() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        LanePublish(METRICS, b"{}", ())


def test_limiter_reserve_holds_back_headroom() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, publishes_per_s=4, bytes_per_s=4096)
    limiter.take(1000)
    limiter.take(1000)
    assert limiter.delay(1000, reserve_publishes=1, reserve_bytes=1024) == 0.0
    limiter.take(1000)
    assert limiter.delay(10, reserve_publishes=1) == pytest.approx(RATE_WINDOW_S)  # 3 of 4 used
    assert limiter.delay(10) == 0.0  # without the reserve the fourth may go
    assert limiter.delay(1000, reserve_bytes=1024) == pytest.approx(RATE_WINDOW_S)
    with pytest.raises(UplinkError, match="leaves nothing"):
        limiter.delay(10, reserve_publishes=4)


def test_backlog_counts_events_in_flight_and_every_lane(tmp_path: Path) -> None:
    clock = FakeClock()
    transport = InMemoryTransport(auto_ack=False)
    transport.connect()
    stop = threading.Event()
    with lanes_and_drain(tmp_path, transport, clock, stop=stop) as (
        outbox, _, metrics, *_, drain,
    ):  # fmt: skip
        assert drain.backlog() is False
        store_minutes(metrics, 1)
        assert drain.backlog() is True  # a lane's rows count
        outbox.enqueue(make_event(clock))
        thread = threading.Thread(target=drain.run, daemon=True)
        thread.start()
        try:
            assert wait_until(lambda: transport.pending == 2)  # both out, no PUBACK yet
            assert drain.backlog() is True
            transport.ack_pending()
            assert wait_until(lambda: not drain.backlog())
        finally:
            stop.set()
            thread.join(WAIT_S)
        assert metrics.stats().rows == 0
        assert outbox.stats().depth == 0


def test_metrics_documents_carry_the_rows_corrected_time(tmp_path: Path) -> None:
    with LaneStore(tmp_path / "o.db", "metrics") as lane:
        # recorded while the clock said 2008; the row's ts was corrected since (LaneStore)
        lane.add([(1_764_000_000.0, datum(1_200_000_000.0).to_json())])
        sender = MetricsLaneSender(lane, topic=METRICS, namespace="EdgeApp")
        publish = sender.next_publish()
        assert publish is not None
        assert json.loads(publish.payload)["_aws"]["Timestamp"] == 1_764_000_000_000
