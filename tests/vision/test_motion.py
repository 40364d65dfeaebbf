"""Motion detector and detection gate on synthetic frames (frame time drives the gate)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.config import MotionConfig
from edge_app.vision.motion import DetectionGate, MotionDetector


def scene(square_x: int | None = None, noise: int = 0, seed: int = 0) -> NDArray[np.uint8]:
    """A 320 x 180 grey frame, optionally with a white 40 x 40 square at ``square_x``."""
    image = np.full((180, 320, 3), 80, np.uint8)
    if noise:
        rng = np.random.default_rng(seed)
        image = np.clip(image + rng.integers(-noise, noise + 1, image.shape), 0, 255).astype(
            np.uint8
        )
    if square_x is not None:
        image[70:110, square_x : square_x + 40] = 255
    return image


def motions(frames: list[NDArray[np.uint8]], **config: Any) -> list[bool]:
    detector = MotionDetector(MotionConfig(**config))
    return [detector.update(f) for f in frames]


def test_first_frame_counts_as_motion_then_a_still_scene_does_not() -> None:
    assert motions([scene()] * 4) == [True, False, False, False]


def test_sensor_noise_below_the_threshold_is_not_motion() -> None:
    frames = [scene(noise=8, seed=i) for i in range(5)]
    assert motions(frames) == [True, False, False, False, False]


def test_a_moving_object_is_motion_and_stopping_ends_it() -> None:
    frames = [scene(10), scene(30), scene(50), scene(50), scene(50)]
    assert motions(frames) == [True, True, True, False, False]


def test_motion_inside_a_mask_is_ignored() -> None:
    frames = [scene(10), scene(30), scene(50)]
    left_half = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
    assert motions(frames, masks=[left_half]) == [True, False, False]


def test_min_area_filters_small_changes() -> None:
    frames = [scene(10), scene(12)]  # a 2-pixel shift changes a thin sliver only
    assert motions(frames, min_area=0.0) == [True, True]
    assert motions(frames, min_area=0.05) == [True, False]


@pytest.mark.parametrize(
    ("busy", "expected"),
    [
        # still scene, nothing watched: only the first frame and the forced one every 5 s
        (False, [0.0, 5.0]),
        # still scene, rules watching an object: every still_every_s (1 s)
        (True, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
    ],
)
def test_gate_decides_by_frame_time(busy: bool, expected: list[float]) -> None:
    gate = DetectionGate(MotionConfig(force_every_s=5.0, still_every_s=1.0))
    image = scene()
    times = [i / 10 for i in range(51)]  # 5 s at 10 fps
    detected = [t for t in times if gate.should_detect(t, image, busy)]
    assert detected == pytest.approx(expected)
    assert gate.detected + gate.skipped == len(times)


def test_disabled_gate_detects_every_frame() -> None:
    gate = DetectionGate(MotionConfig(enabled=False))
    assert all(gate.should_detect(i / 10, scene(), False) for i in range(20))


def test_motion_detects_at_most_every_motion_every_s() -> None:
    """A square moving on every frame of a 10 fps camera: detected every 0.2 s (the default),
    on every frame with ``motion_every_s: 0``; float jitter in i / fps never skips one."""
    frames = [scene(10 + 5 * i) for i in range(11)]
    times = [i / 10 for i in range(11)]
    for every, expected in ((0.2, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), (0.0, times)):
        gate = DetectionGate(MotionConfig(motion_every_s=every, force_every_s=0.0))
        detected = [
            t for t, f in zip(times, frames, strict=True) if gate.should_detect(t, f, False)
        ]
        assert detected == pytest.approx(expected)
