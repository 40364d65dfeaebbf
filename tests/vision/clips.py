"""Replaying a video's detections through rule engines, with the video's own frames.

Detection is the slow part, so a clip is detected once (at a low threshold, every frame) and
each replay applies a detector threshold and a frame step to those detections, while its
frames are decoded again: the tracker's evidence for lost tracks looks at the pixels.
Frame ``i`` has the timestamps ``i / fps``, exactly as the camera loop stamps a file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.config import CameraConfig, MotionConfig, RuleConfig
from edge_app.domain import Detections, Event, Frame, ModelRef, Phase
from edge_app.vision.detector import Detector
from edge_app.vision.motion import DetectionGate
from edge_app.vision.rules import EventContext, RuleEngine

CTX = EventContext("rw", ModelRef("test-model", "0123456789ab"), 1)
WALL0 = 1_790_000_000.0


def frames(path: Path, step: int = 1) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """``(index, BGR image)`` of every ``step``-th frame of ``path``."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            if index % step == 0:
                yield index, np.asarray(image, np.uint8)
            index += 1
    finally:
        capture.release()


def detect_every_frame(detector: Detector, path: Path) -> list[Detections]:
    """The detector's output on every frame of ``path``."""
    out = [detector.detect(image) for _, image in frames(path)]
    assert out, path
    return out


def replay(
    path: Path,
    detections: Sequence[Detections],
    rules: list[RuleConfig],
    *,
    fps: float,
    threshold: float = 0.5,
    step: int = 1,
    motion: MotionConfig | None = None,
    **camera: Any,
) -> list[Event]:
    """Events of ``rules`` on every ``step``-th frame, keeping detections scoring at least
    ``threshold`` (the detector's ``score_threshold``); with ``motion``, only on the frames
    the motion gate passes, as the camera loop does. Open sequences end at the last frame."""
    cam = CameraConfig.model_validate(
        {"name": "rw", "source": {"type": "file", "path": "x.mp4"}, **camera}
    )
    engine = RuleEngine(cam, rules, CTX)
    gate = DetectionGate(motion) if motion is not None else None
    events: list[Event] = []
    last = 0.0
    for index, image in frames(path, step):
        frame = Frame("rw", index, index / fps, WALL0 + index / fps, image)
        last = frame.mono
        if gate is not None and not gate.should_detect(frame.mono, image, engine.busy):
            continue
        found = detections[index]
        events += engine.update(frame, found.select(found.scores >= threshold))
    return events + engine.finish(last, WALL0 + last)


def person_rule(**kw: Any) -> RuleConfig:
    """The issue's per-object person rule (min_score 0.5, min_frames 2, end_after_s 3)."""
    base: dict[str, Any] = {
        "name": "person",
        "labels": ["person"],
        "min_score": 0.5,
        "min_frames": 2,
        "end_after_s": 3.0,
        "per_object": True,
    }
    return RuleConfig.model_validate(base | kw)


def spans(events: list[Event], fps: float) -> list[tuple[float, float]]:
    """(first frame, last frame seen) of each sequence, from its start and its end."""
    ends = {e.extra["start_id"]: e for e in events if e.phase is Phase.END}
    return [
        (s.mono * fps, (s.mono + float(ends[s.id].extra["duration_s"])) * fps)
        for s in events
        if s.phase is Phase.START
    ]
