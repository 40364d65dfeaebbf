"""Fakes at the product's seams that several test files share (the ``Detector`` seam and a
camera loop built around it); the shipped fakes (``FakeClock``, ``InMemoryTransport``) live in
the package."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

from edge_app.clock import Clock, FakeClock
from edge_app.config import AppConfig, ConfigSnapshot
from edge_app.domain import Detections, Event, Image, ModelRef
from edge_app.pipeline import CameraParts, CameraWorker, EventSink, Runtime, RuntimeHolder
from edge_app.sources import FrameSource
from edge_app.vision.detector import Detector, Preparer
from edge_app.vision.labels import LabelMap


class FakeDetector:
    """A ``Detector`` that sees nothing (override ``see``), counts its ``calls`` and cannot
    prepare frames ahead (override ``preparer``)."""

    input_size = (300, 300)
    threads = 1
    runtime_name = "fake runtime"

    def __init__(self, labels: LabelMap | None = None, name: str = "fake") -> None:
        self._labels = LabelMap({0: "person"}) if labels is None else labels
        self._model = ModelRef(name, "0" * 12)
        self._threshold = 0.5
        self.calls = 0

    @property
    def model(self) -> ModelRef:
        return self._model

    @property
    def labels(self) -> LabelMap:
        return self._labels

    @property
    def score_threshold(self) -> float:
        return self._threshold

    def set_score_threshold(self, value: float) -> None:
        self._threshold = value

    def preparer(self) -> Preparer | None:
        return None

    def detect(self, image_bgr: Image) -> Detections:
        self.calls += 1
        return self.see(image_bgr)

    def see(self, image_bgr: Image) -> Detections:
        return Detections.empty()

    def close(self) -> None:
        pass


def keep(event: Event) -> Event:
    """An event sink that stores nothing."""
    return event


def camera_loop(
    config: AppConfig,
    source: FrameSource,
    detector: Detector,
    sink: EventSink = keep,
    *,
    live: RuntimeHolder | None = None,
    clock: Clock | None = None,
    lock: AbstractContextManager[object] | None = None,
) -> CameraWorker:
    """The loop of ``config``'s first camera on ``source``, running ``detector`` under
    ``config`` (or the runtime in ``live``); ``clock`` defaults to a ``FakeClock``."""
    live = live or RuntimeHolder(Runtime(ConfigSnapshot.of(config, "file", None), detector))
    parts = CameraParts(
        source,
        live,
        sink,
        threading.Event(),
        clock or FakeClock(),
        lock or threading.Lock(),
    )
    return CameraWorker(live.current.snapshot.config.cameras[0], parts)
