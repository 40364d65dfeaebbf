"""The camera loop's part in over-the-air updates: the recent-frame ring it feeds (references,
one every ``every_s``) and a failing ``detect`` it rides out, counted, for a while."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_app.clock import FakeClock
from edge_app.config import AppConfig, ConfigSnapshot, parse_config
from edge_app.domain import Detections, Frame, Image
from edge_app.pipeline import (
    MAX_DETECT_ERRORS,
    CameraParts,
    CameraWorker,
    RecentFrames,
    Runtime,
    RuntimeHolder,
)
from edge_app.vision.detector import Detector
from tests.fakes import FakeDetector, ListSource, keep


def config() -> AppConfig:
    return parse_config(
        {
            "device": {"thing_name": "t"},
            "cameras": [{"name": "yard", "source": {"type": "file", "path": "x.mp4"}}],
            "uplink": {"enabled": False},
        }
    )


def frame(camera: str, i: int, mono: float) -> Frame:
    return Frame(camera, i, mono, 1.79e9 + mono, np.full((2, 2, 3), i, np.uint8))


def test_the_ring_keeps_one_frame_per_interval_by_reference_newest_first_across_cameras() -> None:
    ring = RecentFrames(keep=2, every_s=1.0)
    frames = [frame("a", i, i * 0.25) for i in range(13)]  # 0 .. 3 s
    for f in frames:
        ring.offer("a", f)
    ring.offer("b", frame("b", 0, 5.0))
    got = ring.latest(3)
    assert [(f.camera, f.index) for f in got] == [("a", 12), ("b", 0), ("a", 8)]
    assert got[0] is frames[12]  # a reference, not a copy
    assert ring.latest(10) == got


class FailingAfter(FakeDetector):
    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok

    def detect(self, image_bgr: Image) -> Detections:
        self.calls += 1
        if self.calls > self.ok:
            raise RuntimeError("boom")
        return Detections.empty()


def run(detector: Detector, count: int, recent: RecentFrames | None = None) -> CameraWorker:
    cfg = config()
    live = RuntimeHolder(Runtime(ConfigSnapshot.of(cfg, "file", None), detector))
    parts = CameraParts(
        ListSource.blank(count), live, keep, threading.Event(), FakeClock(), recent=recent
    )
    worker = CameraWorker(cfg.cameras[0], parts)
    worker.run()
    return worker


def test_failed_detects_are_counted_and_ridden_out_then_the_loop_stops() -> None:
    worker = run(FailingAfter(ok=3), 3 + MAX_DETECT_ERRORS - 1)
    assert worker.stats.processed == 3
    assert worker.stats.detect_errors == MAX_DETECT_ERRORS - 1
    assert "RuntimeError: boom" in worker.stats.last_detect_error
    with pytest.raises(RuntimeError, match="boom"):
        run(FailingAfter(ok=3), 3 + MAX_DETECT_ERRORS + 5)


def test_the_loop_feeds_the_ring() -> None:
    recent = RecentFrames(keep=4, every_s=0.5)  # ListSource: 10 fps
    worker = run(FakeDetector(), 20, recent)
    assert worker.stats.processed == 20
    assert [f.index for f in recent.latest(4)] == [15, 10, 5, 0]
