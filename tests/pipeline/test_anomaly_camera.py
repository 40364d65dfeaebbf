"""An inspecting camera in the real frame loop: anomaly events with the defect's box and a
heat-map snapshot for a defect never seen, the detector's rules untouched, and a covered lens
reported as tamper, not as a flood of anomalies. Real model, real footage, real snapshots."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.actions import SnapshotWriter
from edge_app.actions.snapshot import sibling
from edge_app.clock import FakeClock
from edge_app.config import AppConfig, ConfigSnapshot, parse_config
from edge_app.domain import Event, Frame, Phase
from edge_app.errors import ModelError
from edge_app.pipeline import CameraParts, CameraWorker, Runtime, RuntimeHolder
from edge_app.vision.anomaly_fit import FitOptions, fit_anomaly
from edge_app.vision.features import FeatureExtractor
from edge_app.vision.inspection import AnomalyInspector
from tests.fakes import FakeDetector
from tests.vision.defects import missing

Image = NDArray[np.uint8]
EXTRACTOR = "models/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


class ListSource:
    """The given images at 10 fps."""

    camera = "line"
    dropped = 0

    def __init__(self, images: list[Image]) -> None:
        self._images = images

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i, image in enumerate(self._images):
            yield Frame("line", i, 100.0 + i / 10, 1_790_000_000.0 + i / 10, image)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def bottles(realworld: Path) -> list[Image]:
    capture = cv2.VideoCapture(str(realworld / "videos" / "bottle-detection.mp4"))
    frames = [np.asarray(capture.read()[1], np.uint8) for _ in range(121)]
    capture.release()
    return frames


@pytest.fixture(scope="module")
def model_file(
    bottles: list[Image], realworld: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    extractor = FeatureExtractor(realworld / EXTRACTOR)
    path = tmp_path_factory.mktemp("anomaly") / "bottles.npz"
    fit_anomaly([("bottles", bottles[:100])], extractor, FitOptions()).save(path)
    return path


def _config(model: Path, realworld: Path, tamper: dict[str, float] | None = None) -> AppConfig:
    camera: dict[str, object] = {
        "name": "line",
        "source": {"type": "usb"},
        "anomaly": {"model": str(model), "extractor": str(realworld / EXTRACTOR), "every_s": 0},
    }
    if tamper is not None:
        camera["tamper"] = tamper
    return parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [camera],
            "rules": [
                {"name": "defect", "labels": ["anomaly"], "min_frames": 2, "end_after_s": 0.5},
                {"name": "person", "labels": ["person"]},
            ],
        }
    )


def _run(
    config: AppConfig, images: list[Image], snapshots: SnapshotWriter | None = None
) -> tuple[CameraWorker, list[Event], FakeDetector]:
    events: list[Event] = []

    def sink(event: Event) -> Event:
        events.append(event)
        return event

    detector = FakeDetector()
    live = RuntimeHolder(Runtime(ConfigSnapshot.of(config, "file", None), detector))
    parts = CameraParts(
        ListSource(images), live, sink, threading.Event(), FakeClock(), snapshots=snapshots
    )
    worker = CameraWorker(config.cameras[0], parts)
    worker.run()
    return worker, events, detector


def test_a_defect_never_seen_raises_an_anomaly_event_with_its_box_and_a_heat_map(
    bottles: list[Image], model_file: Path, realworld: Path, tmp_path: Path
) -> None:
    defective, (x1, y1, x2, y2) = missing(bottles[110], np.random.default_rng(0))
    images = bottles[100:115] + [defective] * 5 + bottles[115:121]
    writer = SnapshotWriter(tmp_path / "snapshots")
    worker, events, detector = _run(_config(model_file, realworld), images, writer)

    assert [(e.rule, e.phase) for e in events] == [("defect", Phase.START), ("defect", Phase.END)]
    start = events[0]
    assert start.label == "anomaly"
    assert start.score > 0.5  # above the calibrated threshold
    assert start.mono == pytest.approx(101.6)  # the second defective frame (min_frames 2)
    bx1, by1, bx2, by2 = start.bbox
    assert bx1 <= (x1 + x2) / 2 <= bx2
    assert by1 <= (y1 + y2) / 2 <= by2
    assert start.model.name == "bottles"  # the anomaly model's lineage, not the detector's
    assert start.model.sha256 != detector.model.sha256
    assert worker.stats.inspected == len(images)
    assert detector.calls == len(images)  # the detector's rules still run on every frame

    assert start.snapshot is not None
    annotated = np.asarray(cv2.imread(str(tmp_path / "snapshots" / start.snapshot.file)))
    clean = np.asarray(
        cv2.imread(str(tmp_path / "snapshots" / sibling(start.snapshot.file, "clean")))
    )
    # the heat map is blended over the whole inspected frame of the annotated JPEG only
    assert float(np.abs(annotated.astype(int) - clean.astype(int)).mean()) > 20
    assert float(np.abs(clean.astype(int) - defective.astype(int)).mean()) < 5


def test_normal_footage_raises_no_anomaly_event(
    bottles: list[Image], model_file: Path, realworld: Path
) -> None:
    worker, events, _ = _run(_config(model_file, realworld), bottles[100:121] * 3)
    assert events == []
    assert worker.stats.inspected == 63


def test_a_covered_lens_is_a_tamper_event_not_a_flood_of_anomalies(
    bottles: list[Image], model_file: Path, realworld: Path
) -> None:
    black = np.zeros_like(bottles[0])
    images = bottles[100:121] * 2 + [black] * 30
    config = _config(model_file, realworld, {"warmup_s": 2.0, "hold_s": 1.0})
    worker, events, _ = _run(config, images)
    assert [(e.rule, e.phase) for e in events] == [
        ("tamper_blocked", Phase.START),
        ("tamper_blocked", Phase.END),
    ]
    (inspector,) = worker.stages
    assert isinstance(inspector, AnomalyInspector)
    assert inspector.suppressed == 30


def test_an_inspecting_camera_gets_tamper_checks_by_default(
    bottles: list[Image], model_file: Path, realworld: Path
) -> None:
    black = np.zeros_like(bottles[0])
    # 12 s of normal frames (the default warm-up is 10 s), then the lens is covered for 4 s
    images = (bottles[100:121] * 6)[:120] + [black] * 40
    _, events, _ = _run(_config(model_file, realworld), images)
    assert [e.rule for e in events] == ["tamper_blocked", "tamper_blocked"]


def test_a_missing_anomaly_model_stops_the_camera_with_a_clear_error(
    realworld: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path / "never-fitted.npz", realworld)
    with pytest.raises(ModelError, match="fit one with `edge-app anomaly fit`"):
        _run(config, [])
