"""The snapshot lane: JPEGs go after events, fit the payload limit, leave the lane on PUBACK."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.clock import FakeClock
from edge_app.errors import UplinkError
from edge_app.outbox import LaneStore, Outbox
from edge_app.uplink import (
    Backoff,
    DrainLoop,
    InMemoryTransport,
    SnapshotSender,
    encode_batch,
    fit_jpeg,
    snapshot_row,
)
from tests.factories import DEVICE, WAIT_S, flush_until, make_event

PREFIX = "edge-app/cam-001"


def noisy_jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return bytes(buf.tobytes())


def test_fit_jpeg_shrinks_until_under_the_limit() -> None:
    big = noisy_jpeg(1280, 720)
    assert len(big) > 131_072
    small = fit_jpeg(big, 131_072)
    assert len(small) <= 131_072
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR) is not None
    assert fit_jpeg(small, 131_072) is small  # already fits: untouched
    with pytest.raises(UplinkError, match="not a decodable image"):
        fit_jpeg(b"x" * 200_000, 131_072)


def test_events_go_before_snapshots_and_rows_leave_on_puback(tmp_path: Path) -> None:
    clock = FakeClock()
    root = tmp_path / "snapshots"
    (root / "dock").mkdir(parents=True)
    db = tmp_path / "outbox.db"
    transport = InMemoryTransport()
    transport.connect()
    with (
        Outbox(
            db, clock=clock, device=DEVICE, max_bytes=2**26, max_age_s=86400.0,
            encoder=encode_batch,
        ) as outbox,
        LaneStore(db, "snapshots", max_rows=100) as lane,
    ):  # fmt: skip
        ids = []
        for i in range(3):
            event = outbox.enqueue(make_event(clock))
            (root / "dock" / f"{event.id}.jpg").write_bytes(noisy_jpeg(1280, 720 - i))
            lane.add([(event.wall, snapshot_row(event.id, f"dock/{event.id}.jpg"))])
            ids.append(event.id)
        lane.add([(clock.time(), snapshot_row("gone", "dock/missing.jpg"))])
        sender = SnapshotSender(lane, root, topic_prefix=PREFIX)
        drain = DrainLoop(
            outbox, transport, topic=f"{PREFIX}/events", clock=clock, stop=threading.Event(),
            max_wait_s=0.0, retry=Backoff(1.0, 5.0, random.Random(0)), lanes=[sender],
        )  # fmt: skip
        # The first cycle also re-encodes three 1280x720 JPEGs for the lane: slow on a busy
        # machine, so a generous budget (flush returns as soon as the events are out).
        assert drain.flush(WAIT_S) is True
        # flush returns once events are out; drive it on until the snapshots are acknowledged.
        assert flush_until(drain, lambda: lane.stats().rows == 0)  # the missing file skipped
        topics = [m.topic for m in transport.published]
        assert topics[0] == f"{PREFIX}/events"  # the event batch went first
        snaps = [m for m in transport.published if "/snapshots/" in m.topic]
        assert [m.topic.rsplit("/", 1)[1] for m in snaps] == ids
        assert all(len(m.payload) <= 131_072 for m in snaps)
        assert sender.missing_files == 1
