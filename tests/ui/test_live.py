"""The live view: the camera loop fills its slot only while a viewer asks, viewers share
throttled encodes, and the picture shows what the loop saw and decided."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_app.actions import Preview, PreviewSlot, annotate
from edge_app.clock import FakeClock
from edge_app.config import ConfigSnapshot, parse_config
from edge_app.domain import Detections, Frame, as_image
from edge_app.pipeline import CameraParts, CameraWorker, Runtime, RuntimeHolder
from edge_app.ui import LiveView
from tests.fakes import FakeDetector, ListSource, keep


def preview(index: int, *, tamper: tuple[str, ...] = ()) -> Preview:
    image = np.full((90, 160, 3), 30 + 10 * index, np.uint8)  # each frame its own picture
    frame = Frame("yard", index, float(index), 1_790_000_000.0 + index, as_image(image))
    dets = Detections(
        np.array([[0.1, 0.1, 0.5, 0.9]], np.float32),
        np.array([0.8], np.float32),
        np.array([0], np.int32),
        ("person",),
    )
    return Preview(
        frame=frame,
        detections=dets,
        tracks=((7, "person", (0.1, 0.1, 0.5, 0.9)),),
        motion=True,
        tamper=tamper,
        zones=(("door", ((0.6, 0.1), (0.9, 0.1), (0.9, 0.8))),),
        lines=(("cross", ((0.0, 0.95), (1.0, 0.95))),),
        config_version=3,
    )


def test_the_slot_is_filled_only_after_a_viewer_asks() -> None:
    slot = PreviewSlot()
    assert not slot.wanted  # the frame loop skips its publish: nobody watches
    assert slot.take() is None
    assert slot.wanted
    first = preview(1)
    slot.put(first)
    assert not slot.wanted  # one frame per ask
    assert slot.take() is first


def test_viewers_share_throttled_encodes() -> None:
    slot = PreviewSlot()
    clock = FakeClock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # what a viewer's thread waits, in the clock's time
        waits.append(round(seconds, 3))
        clock.advance(seconds)

    live = LiveView({"yard": slot}, fps=2.0, now=clock.monotonic, sleep=sleep)
    assert live.jpeg("yard") is None  # no frame yet
    assert live.jpeg("nowhere") is None
    slot.put(preview(1))
    first = live.jpeg("yard")
    assert first is not None
    assert first[:2] == b"\xff\xd8"
    assert waits == []
    slot.put(preview(2))
    clock.advance(0.2)
    # sooner than 1/fps: the request waits for the next slot, then gets the newer frame
    second = live.jpeg("yard")
    assert waits == [0.3]
    assert second is not None
    assert second != first
    # a viewer whose request arrives while the last encode is fresh waits, and with no new
    # frame since gets the same JPEG again: nothing is encoded twice
    assert live.jpeg("yard") == second
    assert waits == [0.3, 0.5]
    assert live.encoded == 2
    # many viewers at once: one encode per frame, every one served
    clock.advance(1.0)
    slot.put(preview(3))
    answers: list[bytes | None] = []
    threads = [threading.Thread(target=lambda: answers.append(live.jpeg("yard"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(answers)) == 1
    assert answers[0] not in (first, second)
    assert live.encoded == 3


def test_fps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fps"):
        LiveView({}, fps=0)


def test_the_picture_shows_boxes_zones_lines_and_state() -> None:
    plain = preview(1)
    drawn = annotate(plain)
    assert drawn.shape == plain.frame.image.shape
    assert np.array_equal(plain.frame.image, np.full((90, 160, 3), 40, np.uint8))  # a copy
    changed = np.any(drawn != plain.frame.image, axis=2)
    assert changed[9:81, 16].any()  # the box's left edge (x = 0.1 * 160)
    assert changed[9:72, 144].any()  # the zone's right edge (x = 0.9 * 160)
    assert changed[85, 20:140].any()  # the crossing line (y = 0.95 * 90)
    tampered = annotate(preview(1, tamper=("blocked",)))
    assert not np.array_equal(tampered, drawn)  # the tamper state is written on it


def test_the_camera_loop_publishes_only_the_frames_a_viewer_asked_for() -> None:
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [
                {
                    "name": "yard",
                    "source": {"type": "usb"},
                    "motion": {"force_every_s": 1.0},
                    "zones": [{"name": "door", "polygon": [[0, 0], [1, 0], [1, 1]]}],
                }
            ],
            "rules": [{"name": "person", "labels": ["person"]}],
        }
    )
    slot = PreviewSlot()
    taken: list[Preview | None] = []

    def viewer(i: int) -> None:  # runs before frame i: a viewer asks before frames 5 and 25
        if i in (5, 25):
            taken.append(slot.take())

    live = RuntimeHolder(Runtime(ConfigSnapshot.of(cfg, "file", None), FakeDetector()))
    parts = CameraParts(
        ListSource.blank(30, viewer), live, keep, threading.Event(), FakeClock(), preview=slot
    )
    CameraWorker(cfg.cameras[0], parts).run()
    last = slot.take()
    assert taken[0] is None  # nothing was published before anyone asked
    assert taken[1] is not None
    assert last is not None
    # one frame per ask: the one right after it, never every frame
    assert (taken[1].frame.index, last.frame.index) == (5, 25)
    assert last.zones == (("door", ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))),)
    assert last.motion is False  # a still frame the gate skipped
    assert last.config_version == 0
