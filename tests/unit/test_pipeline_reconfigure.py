"""CameraWorker adopts a new Runtime at the top of a frame: episodes carry on or end cleanly."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np

from edge_app.config import AppConfig, ConfigSnapshot, parse_config
from edge_app.domain import Detections, Event, Frame, Image, ModelRef
from edge_app.pipeline import CameraWorker, Runtime, RuntimeHolder
from edge_app.vision.labels import LabelMap
from edge_app.vision.rules import EventContext, RuleEngine

PERSON = Detections(
    np.array([[0.4, 0.4, 0.6, 0.9]], np.float32),
    np.array([0.9], np.float32),
    np.array([0], np.int32),
    ("person",),
)


class PersonDetector:
    """Sees one person in every frame (a detector seam for loop tests)."""

    @property
    def model(self) -> ModelRef:
        return ModelRef("fake", "0" * 12)

    @property
    def labels(self) -> LabelMap:
        return LabelMap({0: "person"})

    def detect(self, image_bgr: Image) -> Detections:
        return PERSON

    def close(self) -> None:
        pass


class ScriptedSource:
    """Yields ``count`` frames at 10 fps; calls ``before(i)`` before yielding frame ``i``."""

    camera = "yard"
    dropped = 0

    def __init__(self, count: int, before: Callable[[int], None]) -> None:
        self._count, self._before = count, before

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i in range(self._count):
            self._before(i)
            yield Frame(
                "yard", i, 100.0 + i / 10, 1_790_000_000.0 + i / 10, np.zeros((4, 4, 3), np.uint8)
            )

    def close(self) -> None:
        pass


def config(version: int, rules: list[dict[str, object]]) -> AppConfig:
    return parse_config(
        {
            "version": version,
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [{"name": "yard", "source": {"type": "usb"}}],
            "rules": rules,
        }
    )


def run(change_at: int, new: AppConfig) -> list[Event]:
    detector = PersonDetector()
    old = config(0, [{"name": "person", "labels": ["person"], "min_frames": 1}])
    live = RuntimeHolder(Runtime(ConfigSnapshot.of(old, "file", None), detector))
    events: list[Event] = []

    def sink(event: Event) -> Event:
        events.append(event)
        return event

    def before(i: int) -> None:
        if i == change_at:
            live.swap(Runtime(ConfigSnapshot.of(new, "remote", new.version), detector))

    worker = CameraWorker(
        ScriptedSource(10, before),
        detector,
        RuleEngine(old.cameras[0], old.rules, EventContext("cam-1", detector.model, 0)),
        sink,
        stop=threading.Event(),
        live=live,
    )
    worker.run()
    assert worker.stats.config_version == new.version
    assert worker.stats.config_changes == 1
    return events


def test_same_rules_keep_the_open_episode_and_stamp_the_new_version() -> None:
    same = config(5, [{"name": "person", "labels": ["person"], "min_frames": 1}])
    events = run(4, same)
    assert [(e.rule, e.phase.value, e.config_version) for e in events] == [
        ("person", "start", 0),
        ("person", "end", 5),
    ]
    assert events[1].extra["end_reason"] == "source ended"


def test_changed_rules_end_the_old_episode_and_start_the_new_rules() -> None:
    changed = config(6, [{"name": "anyone", "labels": ["person"], "min_frames": 2}])
    events = run(4, changed)
    assert [(e.rule, e.phase.value, e.config_version) for e in events] == [
        ("person", "start", 0),
        ("person", "end", 0),
        ("anyone", "start", 6),
        ("anyone", "end", 6),
    ]
    assert events[1].extra["end_reason"] == "config changed"
    assert events[2].wall == 1_790_000_000.0 + 5 / 10  # frames 4 and 5 under the new rules
