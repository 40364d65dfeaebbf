"""Image classifiers: format told from the output shape, labels, and the classifier stage of
the camera loop feeding its own rules per region. A real MobileNet v2 ImageNet classifier on
real images where the real-world folder is there; small real TFLite graphs built in the test
everywhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.clock import FakeClock
from edge_app.config import AppConfig, ConfigSnapshot, parse_config
from edge_app.domain import Event, Frame, Phase
from edge_app.errors import ConfigError, ModelError, UnsupportedModelError
from edge_app.pipeline import CameraParts, CameraWorker, Runtime, RuntimeHolder
from edge_app.vision.classifier import Classifier
from tests.fakes import FakeDetector
from tests.vision.tflite_builder import build_constant_model

Image = NDArray[np.uint8]
MOBILENET = "models/mobilenet_v2_1.0_224_quant.tflite"
IMAGENET = "models/imagenet_labels.txt"


class ListSource:
    camera = "line"
    dropped = 0

    def __init__(self, images: list[Image]) -> None:
        self._images = images

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for i, image in enumerate(self._images):
            yield Frame("line", i, 100.0 + i / 10, 1_790_000_000.0 + i / 10, image)

    def close(self) -> None:
        pass


def _run(config: AppConfig, images: list[Image]) -> tuple[CameraWorker, list[Event]]:
    events: list[Event] = []

    def sink(event: Event) -> Event:
        events.append(event)
        return event

    live = RuntimeHolder(Runtime(ConfigSnapshot.of(config, "file", None), FakeDetector()))
    parts = CameraParts(ListSource(images), live, sink, threading.Event(), FakeClock())
    worker = CameraWorker(config.cameras[0], parts)
    worker.run()
    return worker, events


def _config(classify: dict[str, Any], rules: list[dict[str, Any]], zones: Any = ()) -> AppConfig:
    return parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [
                {
                    "name": "line",
                    "source": {"type": "usb"},
                    "zones": list(zones),
                    "classify": classify,
                }
            ],
            "rules": rules,
        }
    )


@pytest.fixture
def logits_model(tmp_path: Path) -> Path:
    """A float classifier of 4 classes whose logits favour class 2 ("scratch")."""
    return build_constant_model(
        tmp_path / "parts.tflite", np.asarray([[0.5, 1.0, 3.0, -2.0]], np.float32)
    )


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    path = tmp_path / "parts.txt"
    path.write_text("good\nmissing cap\nscratch\ndent\n")
    return path


def test_logits_become_probabilities_and_labels_come_from_the_file(
    logits_model: Path, labels: Path
) -> None:
    classifier = Classifier(logits_model, labels=labels)
    top = classifier.top(np.zeros((48, 64, 3), np.uint8), 2)
    assert [label for label, _ in top] == ["scratch", "missing cap"]
    expected = np.exp([0.5, 1.0, 3.0, -2.0]) / np.exp([0.5, 1.0, 3.0, -2.0]).sum()
    assert top[0][1] == pytest.approx(expected[2], rel=1e-4)
    assert float(classifier.scores(np.zeros((8, 8, 3), np.uint8)).sum()) == pytest.approx(1.0)


def test_quantized_probabilities_are_dequantized_not_softmaxed(tmp_path: Path) -> None:
    model = build_constant_model(
        tmp_path / "q.tflite",
        np.asarray([[0.1, 0.7, 0.2]], np.float32),
        output_dtype="uint8",
        scale=1 / 256,
    )
    scores = Classifier(model).scores(np.zeros((32, 32, 3), np.uint8))
    assert scores.tolist() == pytest.approx([0.1, 0.7, 0.2], abs=1 / 256)


def test_without_labels_classes_are_named_by_index(logits_model: Path) -> None:
    assert Classifier(logits_model).top(np.zeros((8, 8, 3), np.uint8), 1)[0][0] == "class_2"


def test_a_model_that_is_no_classifier_is_refused_naming_its_tensors(tmp_path: Path) -> None:
    yolo_like = build_constant_model(tmp_path / "yolo.tflite", np.zeros((1, 84, 20), np.float32))
    with pytest.raises(UnsupportedModelError, match=r"not an image classifier[\s\S]*\[1, 84, 20\]"):
        Classifier(yolo_like)


def test_a_label_file_with_more_classes_than_the_model_is_refused(
    logits_model: Path, tmp_path: Path
) -> None:
    many = tmp_path / "many.txt"
    many.write_text("\n".join(f"c{i}" for i in range(10)))
    with pytest.raises(ModelError, match="names 10 classes"):
        Classifier(logits_model, labels=many)


def test_classifier_labels_feed_the_rules_it_names_with_the_frame_as_box(
    logits_model: Path, labels: Path
) -> None:
    config = _config(
        {"model": str(logits_model), "labels": str(labels), "rules": ["scratched"], "every_s": 0},
        [
            {
                "name": "scratched",
                "labels": ["scratch"],
                "min_score": 0.5,
                "min_frames": 3,
                "review_band": [0.5, 0.9],
            },
            {"name": "person", "labels": ["person"]},
            # not named by the classifier: it watches the detector, which sees nothing
            {"name": "dent", "labels": ["scratch"]},
        ],
    )
    worker, events = _run(config, [np.zeros((36, 64, 3), np.uint8)] * 5)
    assert [(e.rule, e.phase) for e in events] == [
        ("scratched", Phase.START),
        ("scratched", Phase.END),
    ]
    start = events[0]
    assert start.label == "scratch"
    assert start.bbox == (0.0, 0.0, 1.0, 1.0)
    assert start.mono == pytest.approx(100.2)  # the third classified frame (min_frames 3)
    assert start.model.name == "parts"  # the classifier's lineage
    assert start.review  # 0.84 lies in the review band
    assert worker.stats.inspected == 5


def test_unknown_rule_or_zone_of_a_classifier_is_a_config_error(logits_model: Path) -> None:
    rules = [{"name": "scratched", "labels": ["scratch"]}]
    with pytest.raises(ConfigError, match="no rule named 'nope'"):
        _config({"model": str(logits_model), "rules": ["nope"]}, rules)
    with pytest.raises(ConfigError, match="no zone named 'station-9'"):
        _config({"model": str(logits_model), "rules": ["scratched"], "zones": ["station-9"]}, rules)


@pytest.fixture
def photos(realworld: Path) -> dict[str, Image]:
    images = {}
    for name in ("grace_hopper.bmp", "kite_and_cold.jpg"):
        images[name] = np.asarray(cv2.imread(str(realworld / "images" / name)), np.uint8)
    return images


def test_a_real_imagenet_classifier_names_real_images(
    realworld: Path, photos: dict[str, Image]
) -> None:
    classifier = Classifier(realworld / MOBILENET, labels=realworld / IMAGENET)
    assert classifier.classes == 1001
    assert classifier.top(photos["grace_hopper.bmp"], 1)[0][0] == "military uniform"
    top3 = [label.split(",")[0] for label, _ in classifier.top(photos["kite_and_cold.jpg"], 3)]
    assert top3 == ["sandbar", "seashore", "volleyball"]


def test_a_real_detector_is_not_taken_for_a_classifier(realworld: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="not an image classifier"):
        Classifier(realworld / "models" / "ssd_mobilenet_v1_coco_quant.tflite")


def test_per_zone_classification_with_a_real_classifier(
    realworld: Path, photos: dict[str, Image]
) -> None:
    # two stations side by side: a portrait on the left, a beach on the right
    left = cv2.resize(photos["grace_hopper.bmp"], (300, 350))
    right = cv2.resize(photos["kite_and_cold.jpg"], (300, 350))
    frame = np.ascontiguousarray(np.hstack([left, right]), np.uint8)
    zones = [
        {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},
        {"name": "right", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]},
    ]
    rules = [
        {"name": "uniform-left", "labels": ["military uniform"], "zone": "left", "min_frames": 2},
        {
            "name": "uniform-right",
            "labels": ["military uniform"],
            "zone": "right",
            "min_score": 0.05,
        },
        {
            "name": "beach",
            "labels": ["sandbar, sand bar", "seashore, coast, seacoast, sea-coast"],
            "zone": "right",
            "min_score": 0.2,
        },
    ]
    classify = {
        "model": str(realworld / MOBILENET),
        "labels": str(realworld / IMAGENET),
        "zones": ["left", "right"],
        "rules": [r["name"] for r in rules],
        "every_s": 0,
    }
    _, events = _run(_config(classify, rules, zones), [frame] * 3)
    starts = {e.rule: e for e in events if e.phase is Phase.START}
    assert set(starts) == {"uniform-left", "beach"}
    assert starts["uniform-left"].bbox == pytest.approx((0.0, 0.0, 0.5, 1.0))
    assert starts["uniform-left"].zone == "left"
    assert starts["beach"].bbox == pytest.approx((0.5, 0.0, 1.0, 1.0))
    assert starts["uniform-left"].model.name == "mobilenet_v2_1.0_224_quant"


def test_an_anomaly_rule_without_an_anomaly_camera_is_a_config_error(logits_model: Path) -> None:
    rules = [{"name": "scratched", "labels": ["scratch"]}, {"name": "odd", "labels": ["anomaly"]}]
    with pytest.raises(ConfigError, match="no camera it applies to has an `anomaly` section"):
        _config({"model": str(logits_model), "rules": ["scratched"]}, rules)
