"""CameraWorker adopts a new Runtime at the top of a frame: episodes carry on or end cleanly."""

from __future__ import annotations

import numpy as np

from edge_app.config import AppConfig, ConfigSnapshot, parse_config
from edge_app.domain import Detections, EndReason, Event
from edge_app.pipeline import Runtime, RuntimeHolder
from tests.fakes import FakeDetector, ListSource, Recorded, camera_loop

PERSON = Detections(
    np.array([[0.4, 0.4, 0.6, 0.9]], np.float32),
    np.array([0.9], np.float32),
    np.array([0], np.int32),
    ("person",),
)


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
    detector = FakeDetector(sees=lambda _: PERSON)  # one person in every frame
    old = config(0, [{"name": "person", "labels": ["person"], "min_frames": 1}])
    live = RuntimeHolder(Runtime(ConfigSnapshot.of(old, "file", None), detector))
    events = Recorded()

    def before(i: int) -> None:
        if i == change_at:
            live.swap(Runtime(ConfigSnapshot.of(new, "remote", new.version), detector))

    worker = camera_loop(old, ListSource.blank(10, before), detector, events, live=live)
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
    assert events[1].end_reason is EndReason.SOURCE_ENDED


def test_changed_rules_end_the_old_episode_and_start_the_new_rules() -> None:
    changed = config(6, [{"name": "anyone", "labels": ["person"], "min_frames": 2}])
    events = run(4, changed)
    assert [(e.rule, e.phase.value, e.config_version) for e in events] == [
        ("person", "start", 0),
        ("person", "end", 0),
        ("anyone", "start", 6),
        ("anyone", "end", 6),
    ]
    assert events[1].end_reason is EndReason.CONFIG_CHANGED
    assert events[2].wall == 1_790_000_000.0 + 5 / 10  # frames 4 and 5 under the new rules
