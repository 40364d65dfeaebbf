"""The camera loop's motion gate: still frames skip the detector; config swaps rebuild it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from edge_app.config import ConfigSnapshot, MotionConfig, parse_config
from edge_app.domain import Detections, Event, Image, ModelRef
from edge_app.pipeline import CameraWorker, Runtime, RuntimeHolder
from edge_app.vision.labels import LabelMap
from edge_app.vision.rules import EventContext, RuleEngine
from tests.unit.test_pipeline_reconfigure import ScriptedSource


class CountingDetector:
    """Sees nothing; counts how often it was asked."""

    calls = 0

    @property
    def model(self) -> ModelRef:
        return ModelRef("fake", "0" * 12)

    @property
    def labels(self) -> LabelMap:
        return LabelMap({0: "person"})

    def detect(self, image_bgr: Image) -> Detections:
        self.calls += 1
        return Detections.empty()

    def close(self) -> None:
        pass


def _worker(
    detector: CountingDetector,
    motion: MotionConfig | None,
    live: RuntimeHolder | None,
    before: Callable[[int], None] = lambda i: None,
) -> CameraWorker:
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "cameras": [{"name": "yard", "source": {"type": "usb"}}],
            "rules": [{"name": "person", "labels": ["person"]}],
        }
    )

    def sink(event: Event) -> Event:
        return event

    return CameraWorker(
        ScriptedSource(30, before),
        detector,
        RuleEngine(cfg.cameras[0], cfg.rules, EventContext("cam-1", detector.model, 0)),
        sink,
        stop=threading.Event(),
        motion=motion,
        live=live,
    )


def test_still_frames_run_the_detector_only_when_forced() -> None:
    detector = CountingDetector()
    worker = _worker(detector, MotionConfig(force_every_s=1.0), None)
    worker.run()
    # 30 identical frames over 2.9 s: the first (no history), then at 1.0 s and 2.0 s.
    assert detector.calls == 3
    assert worker.stats.skipped_motion == 27
    assert worker.stats.processed == 3


def test_without_motion_config_every_frame_is_detected() -> None:
    detector = CountingDetector()
    worker = _worker(detector, None, None)
    worker.run()
    assert detector.calls == 30
    assert worker.stats.skipped_motion == 0


def test_remote_swap_that_adds_motion_gating_takes_effect_at_the_next_frame() -> None:
    detector = CountingDetector()
    base = {"device": {"thing_name": "cam-1"}, "rules": [{"name": "person", "labels": ["person"]}]}
    old = parse_config({**base, "cameras": [{"name": "yard", "source": {"type": "usb"}}]})
    new = parse_config(
        {
            **base,
            "version": 2,
            "cameras": [
                {"name": "yard", "source": {"type": "usb"}, "motion": {"force_every_s": 0}}
            ],
        }
    )
    live = RuntimeHolder(Runtime(ConfigSnapshot.of(old, "file", None), detector))

    def before(i: int) -> None:
        if i == 10:
            live.swap(Runtime(ConfigSnapshot.of(new, "remote", 2), detector))

    worker = _worker(detector, None, live, before)
    worker.run()
    # frames 0..9 ungated; from frame 10 the new gate sees its first frame (motion: no history)
    # and then only still frames.
    assert detector.calls == 11
    assert worker.stats.config_version == 2
