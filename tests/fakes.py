"""Fakes at the product's seams that several test files share: a function-backed ``Detector``,
a list-backed ``FrameSource``, a recording event sink, a recording remote ``Applier``, a camera
loop built around them, the world a ``HealthMonitor`` watches, and a cloud-side MQTT subscriber
that records what arrives. The shipped fakes
(``FakeClock``, ``InMemoryTransport``) live in the package. One place for them, so a seam that
changes is fixed once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from edge_app.clock import Clock, FakeClock
from edge_app.config import AppConfig, ConfigSnapshot, SnapshotHolder
from edge_app.domain import Detections, Event, Frame, Image, ModelRef
from edge_app.errors import ModelError
from edge_app.ids import new_ulid
from edge_app.models.offer import ModelOffer, UpdateResult, UpdateState
from edge_app.outbox import OutboxStats
from edge_app.pipeline import CameraParts, CameraWorker, EventSink, Runtime, RuntimeHolder
from edge_app.sources import FrameSource
from edge_app.telemetry import HealthMonitor, HealthThresholds
from edge_app.vision.detector import Detector, Preparer
from edge_app.vision.labels import LabelMap
from simulator.peer import SubscribingPeer


class FakeDetector:
    """A ``Detector`` that sees what ``sees(image)`` returns (default: nothing; or override
    ``see``), counts its ``calls`` and cannot prepare frames ahead (override ``preparer``)."""

    input_size = (300, 300)
    threads = 1
    runtime_name = "fake runtime"

    def __init__(
        self,
        labels: LabelMap | None = None,
        name: str = "fake",
        sees: Callable[[Image], Detections] | None = None,
    ) -> None:
        self._labels = LabelMap({0: "person"}) if labels is None else labels
        self._model = ModelRef(name, "0" * 12)
        self._threshold = 0.5
        self._sees = sees
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
        return Detections.empty() if self._sees is None else self._sees(image_bgr)

    def close(self) -> None:
        pass


class ListSource:
    """A ``FrameSource`` of camera ``yard`` yielding ``images`` in order at ``fps`` (monotonic
    time from 100 s, wall time from 1.79e9 s); calls ``before(i)`` before yielding frame ``i``.
    ``images`` may be a generator: frames are made as the loop asks for them."""

    camera = "yard"
    dropped = 0

    def __init__(
        self,
        images: Sequence[Image] | Iterator[Image],
        before: Callable[[int], None] = lambda i: None,
        fps: float = 10.0,
    ) -> None:
        self._images, self._before, self._fps = images, before, fps

    @classmethod
    def blank(cls, count: int, before: Callable[[int], None] = lambda i: None) -> ListSource:
        """``count`` black 4 x 4 frames."""
        return cls((np.zeros((4, 4, 3), np.uint8) for _ in range(count)), before)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i, image in enumerate(self._images):
            self._before(i)
            yield Frame("yard", i, 100.0 + i / self._fps, 1_790_000_000.0 + i / self._fps, image)

    def close(self) -> None:
        pass


def keep(event: Event) -> Event:
    """An event sink that stores nothing."""
    return event


class Recorded(list[Event]):
    """An event sink that keeps every event, in order (it is the list of them)."""

    def __call__(self, event: Event) -> Event:
        self.append(event)
        return event


class RecordingApplier:
    """The remote ``Applier`` seam over a snapshot holder; models in ``broken`` fail to load;
    ``applied`` lists the remote versions applied."""

    def __init__(self, config: AppConfig, broken: frozenset[str] = frozenset()) -> None:
        self.holder = SnapshotHolder(ConfigSnapshot.of(config, "file", None))
        self.broken = broken
        self.applied: list[int] = []

    def current(self) -> ConfigSnapshot:
        return self.holder.current

    def model(self) -> ModelRef:
        return ModelRef(self.holder.current.config.detector.model, "0" * 12)

    def apply(self, config: AppConfig, remote_version: int) -> ConfigSnapshot:
        if config.detector.model in self.broken:
            raise ModelError(f"model {config.detector.model} failed its test run")
        snapshot = ConfigSnapshot.of(config, "remote", remote_version)
        self.holder.swap(snapshot)
        self.applied.append(remote_version)
        return snapshot


class FakeUpdater:
    """The ``ModelUpdates`` seam (``edge_app.models.offer``): "runs" ``running``; an offer
    of the same sha256 is ``unchanged``, one named in ``refuse`` is ``rejected`` with that
    reason, any other is ``switched`` (after a ``progress`` note). ``calls`` lists the
    (offer, origin) it was asked, in order."""

    def __init__(self, running: ModelRef, refuse: dict[str, str] | None = None) -> None:
        self.running = running
        self.refuse = dict(refuse or {})
        self.calls: list[tuple[ModelOffer, str]] = []
        self._lock = threading.Lock()

    def update(
        self, offer: ModelOffer, *, origin: str, progress: Callable[[str], None] | None = None
    ) -> UpdateResult:
        with self._lock:
            self.calls.append((offer, origin))
            if offer.sha256[:12] == self.running.sha256:
                return UpdateResult(UpdateState.UNCHANGED, self.running)
            if offer.name in self.refuse:
                return UpdateResult(UpdateState.REJECTED, self.running, self.refuse[offer.name])
            if progress is not None:
                progress("downloading 100%")
            self.running = ModelRef(offer.name, offer.sha256[:12], offer.version)
            return UpdateResult(UpdateState.SWITCHED, self.running, agreement=0.97)


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


@dataclass
class Cam:
    """One camera's counters as ``HealthMonitor`` reads them."""

    processed: int = 0
    detecting: bool = False


@dataclass
class World:
    """What ``HealthMonitor`` watches besides the cameras: the uplink, the disk (free %, of a
    100-unit disk) and the outbox's bytes (of 1000)."""

    connected: bool = True
    free: int = 50
    outbox_bytes: int = 0


def health_monitor(
    clock: FakeClock,
    cams: dict[str, Cam],
    world: World,
    thresholds: HealthThresholds,
    *,
    watch_uplink: bool = True,
) -> HealthMonitor:
    """A ``HealthMonitor`` of ``cams`` and ``world`` (the ``disk_usage`` seam reads
    ``world.free``); with ``watch_uplink`` false it has no uplink to watch."""
    return HealthMonitor(
        clock=clock,
        cameras=lambda: cams,
        outbox=lambda: OutboxStats(0, world.outbox_bytes, None, 0, 0, 0, 0),
        outbox_max_bytes=1000,
        connected=(lambda: world.connected) if watch_uplink else None,
        disk_path=Path("/"),
        disk_usage=lambda _: (100, 100 - world.free, world.free),
        thresholds=thresholds,
    )


class RecordingSubscriber(SubscribingPeer):
    """The cloud side: a plain MQTT 5 client that records (topic, payload, QoS, retain) of what
    arrives on ``topic_filter``. As a context manager, entered once the broker acknowledged the
    subscription."""

    name = "recording subscriber"

    def __init__(self, host: str, port: int, topic_filter: str) -> None:
        super().__init__(host, port, [(topic_filter, 1)], client_id=f"sub-{new_ulid()}")
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes, int, bool]] = []

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append((msg.topic, bytes(msg.payload), msg.qos, msg.retain))

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _, _ in self._messages if t == topic]

    def messages(self) -> list[tuple[str, bytes, int, bool]]:
        with self._lock:
            return list(self._messages)

    def topics(self) -> set[str]:
        with self._lock:
            return {topic for topic, _, _, _ in self._messages}

    def last_state(self, topic: str) -> str | None:
        """``state`` of the last status payload on ``topic`` (None before any)."""
        payloads = self.payloads(topic)
        return json.loads(payloads[-1])["state"] if payloads else None
