"""The camera loop's motion gate (still frames skip the detector; config swaps rebuild it) and
tamper events (raised with their lifecycle from the loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from edge_app.config import ConfigSnapshot, MotionConfig, TamperConfig, parse_config
from edge_app.domain import Image
from edge_app.pipeline import CameraWorker, Runtime, RuntimeHolder
from tests.fakes import FakeDetector, ListSource, Recorded, camera_loop


def _worker(
    detector: FakeDetector,
    motion: MotionConfig | None,
    live: RuntimeHolder | None,
    before: Callable[[int], None] = lambda i: None,
) -> CameraWorker:
    camera: dict[str, object] = {"name": "yard", "source": {"type": "usb"}}
    if motion is not None:
        camera["motion"] = motion.model_dump()
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [camera],
            "rules": [{"name": "person", "labels": ["person"]}],
        }
    )
    return camera_loop(cfg, ListSource.blank(30, before), detector, live=live)


def test_still_frames_run_the_detector_only_when_forced() -> None:
    detector = FakeDetector()
    worker = _worker(detector, MotionConfig(force_every_s=1.0), None)
    worker.run()
    # 30 identical frames over 2.9 s: the first (no history), then at 1.0 s and 2.0 s.
    assert detector.calls == 3
    assert worker.stats.skipped_motion == 27
    assert worker.stats.processed == 3


def test_without_motion_config_every_frame_is_detected() -> None:
    detector = FakeDetector()
    worker = _worker(detector, None, None)
    worker.run()
    assert detector.calls == 30
    assert worker.stats.skipped_motion == 0


def test_remote_swap_that_adds_motion_gating_takes_effect_at_the_next_frame() -> None:
    detector = FakeDetector()
    base = {
        "device": {"thing_name": "cam-1"},
        "uplink": {"enabled": False},
        "rules": [{"name": "person", "labels": ["person"]}],
    }
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


def textured() -> Iterator[Image]:
    """At 10 fps: a random texture for 3 s, then black for 4 s (lens covered)."""
    texture = np.random.default_rng(1).integers(0, 255, (90, 160, 3)).astype(np.uint8)
    for i in range(70):
        yield texture if i < 30 else np.zeros_like(texture)


def test_camera_loop_raises_tamper_events_with_their_lifecycle() -> None:
    detector = FakeDetector()
    tamper = TamperConfig(warmup_s=2.0, hold_s=1.0)
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [{"name": "yard", "source": {"type": "usb"}, "tamper": tamper.model_dump()}],
            "rules": [{"name": "person", "labels": ["person"]}],
        }
    )
    events = Recorded()

    worker = camera_loop(cfg, ListSource(textured()), detector, events)
    worker.run()
    assert [(e.rule, e.phase.value) for e in events] == [
        ("tamper_blocked", "start"),
        ("tamper_blocked", "end"),
    ]
    start, end = events
    assert start.mono == pytest.approx(104.0)  # black from 103.0, held 1 s
    assert end.extra["start_id"] == start.id
    assert end.extra["end_reason"] == "source ended"
    assert worker.stats.tamper_events == 2
