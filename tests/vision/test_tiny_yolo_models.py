"""YOLO-layout decoding through the real runtime, on tiny models built in the test.

The models (``tflite_builder``) output a fixed candidate table; LiteRT loads and invokes them,
so output types (float32, float16, int8, uint8) and quantization parameters come from the
runtime. Each table below was computed by hand for a 64 x 48 frame letterboxed into the
32 x 32 input (scale 0.5, image 32 x 24 at rows 4..27): model y (px) -> frame y (px) =
(y - 4) / 0.5, x -> x / 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.errors import UnsupportedModelError
from edge_app.vision import TFLiteDetector, inspect_model
from tests.vision.tflite_builder import build_constant_model

FRAME = np.full((48, 64, 3), 90, np.uint8)

# cx, cy, w, h (normalised to the 32 x 32 input), objectness, class 0, class 1
A = [16 / 32, 16 / 32, 8 / 32, 12 / 32, 0.9, 0.9, 0.1]  # score 0.81, class 0
B = [17 / 32, 16 / 32, 8 / 32, 12 / 32, 0.8, 0.9, 0.1]  # 0.72, class 0, IoU 0.78 with A
C = [8 / 32, 8 / 32, 8 / 32, 8 / 32, 0.95, 0.0, 0.8]  # 0.76, class 1
NOISE = [0.5, 0.5, 0.1, 0.1, 0.1, 0.5, 0.5]  # objectness 0.1
ROWS = [A, NOISE, B, NOISE, C, NOISE, NOISE, NOISE]

# A: model px x 12..20, y 10..22 -> frame px x 24..40, y 12..36 of 64 x 48.
# C: model px x 4..12, y 4..12 -> frame px x 8..24, y 0..16.
EXPECTED_BOXES = [[24 / 64, 12 / 48, 40 / 64, 36 / 48], [8 / 64, 0.0, 24 / 64, 16 / 48]]
EXPECTED_SCORES = [0.81, 0.76]
EXPECTED_CLASSES = [0, 1]


def _v5_table(pixels: bool = False) -> NDArray[np.float32]:
    table = np.array([ROWS], np.float32)
    if pixels:
        table[..., :4] *= 32
    return table


def _v8_table() -> NDArray[np.float32]:
    # No objectness: class scores are the final scores.
    rows = np.array(ROWS, np.float32)
    columns = np.concatenate([rows[:, :4], rows[:, 5:] * rows[:, 4:5]], axis=1).T
    return columns[None]


CASES = [
    pytest.param("yolov5", _v5_table(), "float32", None, 0, 1e-5, id="v5-float32"),
    pytest.param("yolov5", _v5_table(pixels=True), "float32", None, 0, 1e-5, id="v5-pixels"),
    pytest.param("yolov5", _v5_table(), "float16", None, 0, 2e-3, id="v5-float16"),
    pytest.param("yolov5", _v5_table(), "int8", 1 / 255, -128, 0.02, id="v5-int8"),
    pytest.param("yolov5", _v5_table(), "uint8", 1 / 255, 0, 0.02, id="v5-uint8"),
    pytest.param("yolov8", _v8_table(), "float32", None, 0, 1e-5, id="v8-float32"),
    pytest.param("yolov8", _v8_table(), "int8", 1 / 255, -128, 0.02, id="v8-int8"),
    pytest.param("yolov8", _v8_table(), "float16", None, 0, 2e-3, id="v8-float16"),
]


@pytest.mark.parametrize(("fmt", "table", "dtype", "scale", "zero_point", "atol"), CASES)
def test_tiny_model_decodes_to_the_hand_computed_boxes(
    tmp_path: Path,
    fmt: str,
    table: NDArray[np.float32],
    dtype: str,
    scale: float | None,
    zero_point: int,
    atol: float,
) -> None:
    path = build_constant_model(
        tmp_path / "tiny.tflite", table, output_dtype=dtype, scale=scale, zero_point=zero_point
    )
    with TFLiteDetector(path, threads=1, score_threshold=0.5) as detector:
        assert detector.format == fmt
        assert detector.outputs[0].dtype == dtype
        assert (detector.options.resize, detector.options.input_range) == ("letterbox", "0..1")
        found = detector.detect(FRAME)
    # B is suppressed by A (same class, IoU 0.78 > 0.45); the noise is below the threshold.
    np.testing.assert_allclose(found.xyxy, EXPECTED_BOXES, atol=atol)
    np.testing.assert_allclose(found.scores, EXPECTED_SCORES, atol=atol)
    assert found.class_ids.tolist() == EXPECTED_CLASSES
    assert found.labels == ("class_0", "class_1")


def test_without_nms_overlap_limit_both_candidates_stay(tmp_path: Path) -> None:
    path = build_constant_model(tmp_path / "tiny.tflite", _v5_table())
    with TFLiteDetector(path, threads=1, iou_threshold=0.9) as detector:
        found = detector.detect(FRAME)
    np.testing.assert_allclose(sorted(found.scores.tolist()), [0.72, 0.76, 0.81], atol=1e-5)


def test_stretch_override_maps_boxes_without_padding(tmp_path: Path) -> None:
    path = build_constant_model(tmp_path / "tiny.tflite", _v5_table())
    with TFLiteDetector(path, threads=1, preprocess={"resize": "stretch"}) as detector:
        found = detector.detect(FRAME)
    # Stretched: model-normalised boxes are frame-normalised as they are.
    np.testing.assert_allclose(found.xyxy[0], [12 / 32, 10 / 32, 20 / 32, 22 / 32], atol=1e-5)


def test_yolox_override_is_accepted_for_the_same_layout(tmp_path: Path) -> None:
    path = build_constant_model(tmp_path / "tiny.tflite", _v5_table())
    with TFLiteDetector(path, threads=1, fmt="yolox") as detector:
        assert detector.format == "yolox"
        assert detector.detect(FRAME).class_ids.tolist() == EXPECTED_CLASSES


def test_bad_preprocessing_override_is_refused(tmp_path: Path) -> None:
    path = build_constant_model(tmp_path / "tiny.tflite", _v5_table())
    with pytest.raises(UnsupportedModelError, match="pad_value"):
        TFLiteDetector(path, threads=1, preprocess={"pad_value": 999})


def test_inspect_reports_format_and_preprocessing(tmp_path: Path) -> None:
    path = build_constant_model(
        tmp_path / "tiny.tflite", _v8_table(), output_dtype="int8", scale=1 / 255, zero_point=-128
    )
    report = inspect_model(path)
    assert report["format"] == "yolov8"
    assert report["outputs"][0]["quantization"]["zero_point"] == -128
    pre = report["preprocessing"]
    assert (pre["resize"], pre["pad_value"], pre["input_range"]) == ("letterbox", 114, "0..1")
    assert (pre["width"], pre["height"], pre["quantized_input"]) == (32, 32, False)


@pytest.mark.parametrize("shape", [(1, 85, 7), (1, 7, 85)], ids=["yolov5", "yolov8"])
def test_a_model_that_outputs_1e30_detects_nothing_and_says_so_once(
    tmp_path: Path, shape: tuple[int, int, int], caplog: pytest.LogCaptureFixture
) -> None:
    # Before: 85 detections scored 1e30 (or inf) with empty boxes that all survived NMS.
    path = build_constant_model(tmp_path / "huge.tflite", np.full(shape, 1e30, np.float32))
    with TFLiteDetector(path, threads=1) as detector, caplog.at_level("WARNING"):
        first, second = detector.detect(FRAME), detector.detect(FRAME)
    assert (len(first), len(second)) == (0, 0)
    warnings = [r.getMessage() for r in caplog.records if "implausible" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "85 implausible candidate(s)" in warnings[0]


@pytest.mark.slow
def test_plausible_rows_survive_beside_1e30_rows(tmp_path: Path) -> None:
    table = np.concatenate([_v5_table(), np.full((1, 4, 7), 1e30, np.float32)], axis=1)
    with TFLiteDetector(build_constant_model(tmp_path / "m.tflite", table), threads=1) as det:
        found = det.detect(FRAME)
    np.testing.assert_allclose(found.xyxy, EXPECTED_BOXES, atol=1e-5)
    np.testing.assert_allclose(found.scores, EXPECTED_SCORES, atol=1e-5)
