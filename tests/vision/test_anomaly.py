"""Anomaly detection learned from real normal footage, checked on real frames with injected
defects (foreign object, scratch, missing bottle, recoloured cap) whose boxes are known.

The normal scene is the opening of ``bottle-detection.mp4`` (frames 0..120: three bottles, no
hands; the camera shifts a little from about frame 125). The model is fitted on frames 0..99
(the last 20 held out for calibration); frames 100..120 are never seen by the fit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.errors import ModelError, SourceError, UnsupportedModelError
from edge_app.models import sha256_file
from edge_app.vision.anomaly import AnomalyModel, AnomalyScorer, score01
from edge_app.vision.anomaly_fit import FitOptions, Labelled, evaluate, fit_anomaly
from edge_app.vision.features import FeatureExtractor
from tests.vision.defects import DEFECTS, inject

Image = NDArray[np.uint8]
EXTRACTOR = "models/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


@pytest.fixture(scope="module")
def bottles(realworld: Path) -> list[Image]:
    capture = cv2.VideoCapture(str(realworld / "videos" / "bottle-detection.mp4"))
    frames = []
    for _ in range(121):
        ok, frame = capture.read()
        assert ok
        frames.append(np.asarray(frame, np.uint8))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def extractor(realworld: Path) -> FeatureExtractor:
    return FeatureExtractor(realworld / EXTRACTOR)


@pytest.fixture(scope="module")
def fitted(bottles: list[Image], extractor: FeatureExtractor) -> AnomalyModel:
    return fit_anomaly([("bottles", bottles[:100])], extractor, FitOptions())


def defect_set(bottles: list[Image], realworld: Path, count: int = 40) -> list[Labelled]:
    donor = np.asarray(cv2.imread(str(realworld / "images" / "kite_and_cold.jpg")), np.uint8)
    rng = np.random.default_rng(7)
    kinds = list(DEFECTS)
    items = []
    for i in range(count):
        image, box = inject(bottles[100 + i % 21], kinds[i % len(kinds)], rng, donor)
        items.append(Labelled(image, (box,)))
    return items


def test_injected_defects_are_detected_and_located_without_false_alarms(
    bottles: list[Image], extractor: FeatureExtractor, fitted: AnomalyModel, realworld: Path
) -> None:
    scorer = AnomalyScorer(fitted, extractor)
    result = evaluate(scorer, iter(bottles[100:]), defect_set(bottles, realworld))
    assert result.normal_frames == 21
    assert result.defect_frames == 40
    assert result.auroc >= 0.95
    assert result.localisation >= 0.9
    assert result.false_alarm_rate == 0.0
    assert result.detected >= 0.8


@pytest.mark.parametrize("kind", list(DEFECTS))
def test_each_kind_of_defect_scores_above_every_normal_frame(
    kind: str,
    bottles: list[Image],
    extractor: FeatureExtractor,
    fitted: AnomalyModel,
    realworld: Path,
) -> None:
    scorer = AnomalyScorer(fitted, extractor)
    donor = np.asarray(cv2.imread(str(realworld / "images" / "kite_and_cold.jpg")), np.uint8)
    rng = np.random.default_rng(3)
    normal = max(scorer.score(f).raw for f in bottles[100:])
    image, (x1, y1, x2, y2) = inject(bottles[110], kind, rng, donor)
    found = scorer.score(image)
    assert found.raw > normal
    bx1, by1, bx2, by2 = found.box
    assert bx1 <= (x1 + x2) / 2 <= bx2
    assert by1 <= (y1 + y2) / 2 <= by2


def test_the_model_file_records_its_lineage_and_is_private(
    fitted: AnomalyModel, realworld: Path, tmp_path: Path
) -> None:
    path = tmp_path / "bottles.npz"
    fitted.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = AnomalyModel.load(path)
    assert loaded.threshold == pytest.approx(fitted.threshold)
    np.testing.assert_array_equal(loaded.bank, fitted.bank)
    meta = loaded.meta
    assert meta["extractor"]["sha256"] == sha256_file(realworld / EXTRACTOR)
    assert meta["sources"] == [{"source": "bottles", "frames": 100, "train": 80}]
    assert meta["frames"] == {"train": 80, "held_out": 20}
    calibration = meta["calibration"]
    assert loaded.threshold > calibration["held_out_max"] > calibration["held_out_p95"]
    assert calibration["held_out_far"] == 0.0
    assert loaded.ref.sha256 == sha256_file(path)[:12]
    assert loaded.ref.name == "bottles"


def test_score01_is_one_half_at_the_threshold() -> None:
    assert score01(4.0, 4.0) == pytest.approx(0.5)
    assert score01(8.0, 4.0) == pytest.approx(0.75)
    assert score01(0.0, 4.0) == 0.0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"not a model at all", "not an edge-app anomaly model"),
        (None, "not an edge-app anomaly model"),  # a real .tflite file
    ],
)
def test_a_file_that_is_not_an_anomaly_model_is_refused(
    content: bytes | None, why: str, realworld: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(content if content is not None else (realworld / EXTRACTOR).read_bytes())
    with pytest.raises(ModelError, match=why):
        AnomalyModel.load(path)


def test_an_npz_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ModelError, match="not an edge-app anomaly model"):
        AnomalyModel.load(path)


def test_a_missing_model_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="anomaly fit"):
        AnomalyModel.load(tmp_path / "nowhere.npz")


def test_an_empty_training_set_is_refused(extractor: FeatureExtractor) -> None:
    with pytest.raises(SourceError, match="no frames to learn from"):
        fit_anomaly([("empty", [])], extractor, FitOptions())


def test_too_few_frames_are_refused(bottles: list[Image], extractor: FeatureExtractor) -> None:
    with pytest.raises(SourceError, match="too few"):
        fit_anomaly([("one", bottles[:1])], extractor, FitOptions())


def test_another_extractor_than_the_fitted_one_is_refused(
    fitted: AnomalyModel, realworld: Path
) -> None:
    classifier = FeatureExtractor(realworld / "models" / "mobilenet_v2_1.0_224_quant.tflite")
    with pytest.raises(ModelError, match="give the extractor it was fitted with"):
        AnomalyScorer(fitted, classifier)


def test_a_model_without_a_feature_map_is_refused(realworld: Path) -> None:
    # SSD's 300 x 300 input has no 18 x 18 map; its 19 x 19 one is not at stride 16
    with pytest.raises(UnsupportedModelError, match="no \\[1, 18, 18, C\\] feature map"):
        FeatureExtractor(realworld / "models" / "ssd_mobilenet_v1_coco_quant.tflite")


def test_a_model_that_cannot_run_is_refused(realworld: Path) -> None:
    with pytest.raises(ModelError):
        FeatureExtractor(realworld / "models" / "model_invoking_error.tflite")
