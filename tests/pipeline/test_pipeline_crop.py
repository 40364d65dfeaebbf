"""The camera loop detects on a window around small motion (``motion.crop``) and maps the
boxes back to the whole frame; once something is tracked it looks at the whole frame again."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.config import AppConfig, MotionConfig, parse_config
from edge_app.domain import Detections, Image
from edge_app.vision.labels import LabelMap
from edge_app.vision.preprocess import BoxMap, PreparedInput
from tests.fakes import FakeDetector, ListSource, Recorded, camera_loop

W, H = 768, 432


class WindowDetector(FakeDetector):
    """A 300 x 300 model that finds a cat in the middle half of any image smaller than the
    frame (a crop window) and nothing in a whole frame; records the shapes it was given."""

    def __init__(self) -> None:
        super().__init__(LabelMap({0: "cat"}))
        self.shapes: list[tuple[int, ...]] = []

    def preparer(self) -> WindowDetector:
        return self

    def see(self, image_bgr: Image) -> Detections:
        self.shapes.append(image_bgr.shape)
        if image_bgr.shape[:2] == (H, W):
            return Detections.empty()
        xyxy = np.array([[0.25, 0.25, 0.75, 0.75]], np.float32)
        return Detections(xyxy, np.array([0.9], np.float32), np.array([0], np.int32), ("cat",))

    def prepare(self, image_bgr: Image) -> PreparedInput:
        return PreparedInput(image_bgr, BoxMap(), ())

    def detect_prepared(self, image_bgr: Image, prepared: PreparedInput) -> Detections:
        return self.detect(image_bgr)


def square() -> list[Image]:
    """A grey 768 x 432 scene with a 20 px square moving right by 5 px a frame (4 frames)."""
    images: list[Image] = []
    for i in range(4):
        image: NDArray[np.uint8] = np.full((H, W, 3), 90, np.uint8)
        x = 374 + 5 * i
        image[206:226, x : x + 20] = 250
        images.append(image)
    return images


def config(motion: MotionConfig) -> AppConfig:
    return parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [{"name": "yard", "source": {"type": "usb"}, "motion": motion.model_dump()}],
            "rules": [{"name": "cat", "labels": ["cat"], "min_frames": 1}],
        }
    )


def test_small_motion_is_detected_in_a_window_and_boxes_land_on_the_frame() -> None:
    cfg = config(MotionConfig(crop=True, motion_every_s=0.0, min_area=0.0))
    detector = WindowDetector()
    events = Recorded()

    worker = camera_loop(cfg, ListSource(square()), detector, events)
    worker.run()
    # frame 0: everything is new (whole frame); frame 1: the square moved, nothing tracked
    # (a 300 x 300 window); frames 2, 3: the cat is tracked, so the whole frame again
    assert detector.shapes == [(H, W, 3), (300, 300, 3), (H, W, 3), (H, W, 3)]
    assert worker.stats.cropped == 1
    start = events[0]
    assert start.phase.value == "start"
    x1, y1, x2, y2 = start.bbox
    # the middle half of a 300 px window centred on the square (centre about 389, 216)
    assert (x2 - x1) * W == pytest.approx(150, abs=1)
    assert (y2 - y1) * H == pytest.approx(150, abs=1)
    assert (x1 + x2) / 2 * W == pytest.approx(389, abs=12)
    assert (y1 + y2) / 2 * H == pytest.approx(216, abs=12)


def test_without_crop_every_detection_sees_the_whole_frame() -> None:
    cfg = config(MotionConfig(motion_every_s=0.0, min_area=0.0))
    detector = WindowDetector()
    worker = camera_loop(cfg, ListSource(square()), detector)
    worker.run()
    assert detector.shapes == [(H, W, 3)] * 4
    assert worker.stats.cropped == 0
