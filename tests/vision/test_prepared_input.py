"""The resize done ahead on the reader thread (``prepare``) with the real SSD v1 model."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.clock import FakeClock
from edge_app.config import MotionConfig, parse_config
from edge_app.domain import Detections, Event, Frame
from edge_app.errors import ModelError
from edge_app.sources import FramePreparer, VideoFileSource
from edge_app.vision import TFLiteDetector
from tests.fakes import camera_loop

LABELS = Path(__file__).resolve().parents[2] / "models" / "labels" / "coco_labels_v1.txt"
pytestmark = pytest.mark.realworld


@pytest.fixture(scope="module")
def v1(v1_model: Path) -> Iterator[TFLiteDetector]:
    with TFLiteDetector(v1_model, LABELS, threads=2) as detector:
        yield detector


@pytest.fixture(scope="module")
def hopper(realworld: Path) -> NDArray[np.uint8]:
    image = cv2.imread(str(realworld / "images" / "grace_hopper.bmp"))
    assert image is not None
    return np.asarray(image, np.uint8)


def _same(a: Detections, b: Detections) -> None:
    assert len(a) > 0
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_detect_prepared_finds_exactly_what_detect_finds(
    v1: TFLiteDetector, hopper: NDArray[np.uint8]
) -> None:
    _same(v1.detect_prepared(hopper, v1.prepare(hopper)), v1.detect(hopper))


def test_input_prepared_for_other_options_is_redone_from_the_frame(
    v1: TFLiteDetector, v1_model: Path, hopper: NDArray[np.uint8]
) -> None:
    """After a model swap, frames prepared for the old input are resized again, not fed."""
    with TFLiteDetector(v1_model, LABELS, preprocess={"resize": "letterbox"}) as boxed:
        stale = boxed.prepare(hopper)
    _same(v1.detect_prepared(hopper, stale), v1.detect(hopper))


def _clip(path: Path, image: NDArray[np.uint8], frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (320, 240))
    small = cv2.resize(image, (320, 240))
    for i in range(frames):
        writer.write(np.roll(small, 4 * i, axis=1))
    writer.release()
    return path


class Recording:
    """A video source that also keeps the frames it delivered and the preparer it was asked
    to run (``prepare_with`` passes through)."""

    def __init__(self, source: VideoFileSource) -> None:
        self.camera, self._source = source.camera, source
        self.seen: list[Frame] = []
        self.preparer: FramePreparer | None = None

    def prepare_with(self, preparer: FramePreparer | None) -> None:
        self.preparer = preparer
        self._source.prepare_with(preparer)

    @property
    def dropped(self) -> int:
        return 0

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for frame in self._source.frames(stop):
            self.seen.append(frame)
            yield frame

    def close(self) -> None:
        self._source.close()


CORES = os.cpu_count() or 1


@pytest.mark.parametrize(
    ("gated", "threads"), [(False, 1), (True, 1), (False, CORES)], ids=["every", "gated", "busy"]
)
def test_camera_loop_lets_the_reader_thread_resize_when_it_detects_every_frame(
    v1_model: Path, hopper: NDArray[np.uint8], tmp_path: Path, gated: bool, threads: int
) -> None:
    """Only a camera that detects every frame, with a core the interpreter leaves free."""
    source = VideoFileSource(_clip(tmp_path / "c.mp4", hopper, 12), "c", clock=FakeClock())
    cfg = parse_config(
        {
            "device": {"thing_name": "t"},
            "uplink": {"enabled": False},
            "cameras": [
                {
                    "name": "c",
                    "source": {"type": "usb"},
                    "motion": MotionConfig(force_every_s=0.0).model_dump() if gated else None,
                }
            ],
            "rules": [{"name": "person", "labels": ["person"]}],
        }
    )
    recording = Recording(source)
    events: list[Event] = []

    def sink(event: Event) -> Event:
        events.append(event)
        return event

    expected = not gated and threads < CORES
    with TFLiteDetector(v1_model, LABELS, threads=threads) as detector:
        worker = camera_loop(cfg, recording, detector, sink)
        assert (recording.preparer is detector) is expected
        worker.run()
        source.close()
    assert worker.stats.frames == 12
    prepared = [f.prepared is not None for f in recording.seen]
    assert prepared == [expected] * 12  # otherwise the resize happens in detect
    assert worker.stats.detections > 0
    assert [e.phase.value for e in events] == ["start", "end"]


def test_a_closed_detector_refuses_to_prepare(v1_model: Path, hopper: NDArray[np.uint8]) -> None:
    """``close`` lets the interpreter go; nothing the reader thread holds keeps it alive."""
    detector = TFLiteDetector(v1_model, LABELS)
    detector.close()
    with pytest.raises(ModelError, match="closed"):
        detector.prepare(hopper)
