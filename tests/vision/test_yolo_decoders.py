"""YOLO-family decoders, dequantisation and per-class NMS on synthetic tensors.

No YOLO weights are available offline, so every expectation here is a hand-computed table:
the tensors are written the way each exporter lays them out, and the boxes, scores and classes
that must come out are computed by hand in the comments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_app.errors import UnsupportedModelError
from edge_app.vision.decoders import (
    DECODERS,
    TensorInfo,
    dequantize,
    detect_format,
    get_decoder,
)
from edge_app.vision.nms import box_iou, nms_per_class


def _t(shape: tuple[int, ...], dtype: str = "float32", name: str = "output0") -> TensorInfo:
    return TensorInfo(name=name, index=0, shape=shape, dtype=dtype)


SSD = [
    TensorInfo("boxes", 0, (1, 10, 4), "float32"),
    TensorInfo("classes", 1, (1, 10), "float32"),
    TensorInfo("scores", 2, (1, 10), "float32"),
    TensorInfo("count", 3, (1,), "float32"),
]


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ([_t((1, 25200, 85))], "yolov5"),  # YOLOv5s 640, COCO
        ([_t((1, 6300, 6))], "yolov5"),  # YOLOv5n 320, one class
        ([_t((1, 25200, 85), "int8")], "yolov5"),
        ([_t((1, 25200, 85), "float16")], "yolov5"),
        ([_t((1, 84, 8400))], "yolov8"),  # YOLOv8n / YOLO11n 640, COCO
        ([_t((1, 5, 2100))], "yolov8"),  # one class, 320
        ([_t((1, 84, 8400), "uint8")], "yolov8"),
        (SSD, "ssd_postprocess"),
    ],
)
def test_format_is_detected_from_the_output_shapes(
    outputs: list[TensorInfo], expected: str
) -> None:
    assert detect_format(outputs) == expected


@pytest.mark.parametrize(
    ("outputs", "named"),
    [
        ([_t((1, 84, 8400)), _t((1, 256), name="state_out")], "state_out"),  # recurrent state
        ([_t((1, 25200, 85), "int32")], "int32"),  # no quantization story for int32 scores
        ([_t((25200, 85))], "[25200, 85]"),  # no batch axis
        ([_t((1, 25200, 5))], "[1, 25200, 5]"),  # no class column
    ],
)
def test_layouts_no_decoder_takes_are_refused_naming_the_tensors(
    outputs: list[TensorInfo], named: str
) -> None:
    with pytest.raises(UnsupportedModelError, match="no decoder understands") as info:
        detect_format(outputs, model="m.tflite")
    assert named in str(info.value)


def test_unknown_format_name_lists_the_known_ones() -> None:
    with pytest.raises(UnsupportedModelError, match="yolov8") as info:
        get_decoder("yolov9000")
    assert "yolov9000" in str(info.value)


def test_forced_format_must_still_fit_the_tensors() -> None:
    with pytest.raises(UnsupportedModelError, match="not the yolov8 layout") as info:
        DECODERS["yolov8"].bind(SSD, None, (320, 320))
    assert "boxes [1, 10, 4]" in str(info.value)


def test_yolox_reads_the_yolov5_rows_identically() -> None:
    rows = np.array([[[0.5, 0.5, 0.2, 0.4, 0.9, 0.1, 0.8]]], np.float32)
    outputs = [_t((1, 1, 7))]
    results = []
    for name in ("yolov5", "yolox"):
        decoder = DECODERS[name]
        results.append(decoder.decode([rows], 0.5, decoder.bind(outputs, None, (640, 640))))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


# cx, cy, w, h, objectness, class 0, class 1 -> expected (x1, y1, x2, y2), score, class
V5_TABLE: list[tuple[list[float], tuple[list[float], float, int] | None]] = [
    ([0.5, 0.5, 0.2, 0.4, 0.9, 0.1, 0.8], ([0.4, 0.3, 0.6, 0.7], 0.72, 1)),  # 0.9 * 0.8
    ([0.1, 0.1, 0.4, 0.4, 1.0, 0.6, 0.3], ([0.0, 0.0, 0.3, 0.3], 0.6, 0)),  # clipped at 0
    ([0.5, 0.5, 0.2, 0.2, 0.4, 1.0, 0.0], None),  # objectness below the threshold
    ([0.5, 0.5, 0.2, 0.2, 0.9, 0.5, 0.5], None),  # 0.45 < 0.5 although objectness passes
    ([0.9, 0.9, 0.4, 0.4, 1.0, 0.0, 0.5], ([0.7, 0.7, 1.0, 1.0], 0.5, 1)),  # inclusive, clipped
]


def _v5(rows: list[list[float]], size: tuple[int, int] = (320, 320)) -> Any:
    decoder = DECODERS["yolov5"]
    tensor = np.array([rows], np.float32)
    return decoder.decode([tensor], 0.5, decoder.bind([_t(tensor.shape)], None, size))


def test_yolov5_rows_decode_to_the_hand_computed_table() -> None:
    decoded = _v5([row for row, _ in V5_TABLE])
    expected = [want for _, want in V5_TABLE if want is not None]
    np.testing.assert_allclose(decoded.xyxy, [box for box, _, _ in expected], atol=1e-6)
    np.testing.assert_allclose(decoded.scores, [score for _, score, _ in expected], atol=1e-6)
    assert decoded.class_ids.tolist() == [cls for _, _, cls in expected]


def test_yolov5_pixel_coordinates_are_normalised_by_the_input_size() -> None:
    # 640 x 320 input: cx 320 px = 0.5, w 128 px = 0.2; cy 160 px = 0.5, h 128 px = 0.4.
    decoded = _v5([[320, 160, 128, 128, 0.9, 0.1, 0.8]], size=(640, 320))
    np.testing.assert_allclose(decoded.xyxy, [[0.4, 0.3, 0.6, 0.7]], atol=1e-6)


def test_nothing_above_the_threshold_decodes_to_empty_typed_arrays() -> None:
    decoded = _v5([[0.5, 0.5, 0.2, 0.2, 0.1, 0.9, 0.9]])
    assert decoded.xyxy.shape == (0, 4)
    assert (decoded.xyxy.dtype, decoded.scores.dtype, decoded.class_ids.dtype) == (
        np.dtype(np.float32),
        np.dtype(np.float32),
        np.dtype(np.int32),
    )


def test_yolov8_columns_decode_to_the_hand_computed_table() -> None:
    # Three candidates (columns), three classes, no objectness: score = best class score.
    columns = np.array(
        [
            [0.5, 0.5, 0.2, 0.4, 0.1, 0.8, 0.3],  # class 1 at 0.8
            [0.2, 0.2, 0.2, 0.2, 0.3, 0.2, 0.1],  # best 0.3: dropped
            [0.8, 0.5, 0.2, 0.2, 0.0, 0.0, 0.55],  # class 2 at 0.55
        ],
        np.float32,
    ).T[None]
    assert columns.shape == (1, 7, 3)
    decoder = DECODERS["yolov8"]
    decoded = decoder.decode([columns], 0.5, decoder.bind([_t(columns.shape)], None, (64, 64)))
    np.testing.assert_allclose(decoded.xyxy, [[0.4, 0.3, 0.6, 0.7], [0.7, 0.4, 0.9, 0.6]])
    np.testing.assert_allclose(decoded.scores, [0.8, 0.55])
    assert decoded.class_ids.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("raw", "dtype", "scale", "zero_point", "expected"),
    [
        ([-128, 0, 127], "int8", 1 / 255, -128, [0.0, 128 / 255, 1.0]),
        ([0, 128, 255], "uint8", 0.5, 128, [-64.0, 0.0, 63.5]),
        ([10, 20], "int16", 0.25, 0, [2.5, 5.0]),
        ([0.5, 0.25], "float16", 0.0, 0, [0.5, 0.25]),
        ([7, 8], "uint8", 0.0, 0, [7.0, 8.0]),  # unquantized integers pass as values
    ],
)
def test_dequantize_table(
    raw: list[float], dtype: str, scale: float, zero_point: int, expected: list[float]
) -> None:
    array = np.array(raw, dtype)
    out = dequantize(array, TensorInfo("o", 0, array.shape, dtype, scale, zero_point))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_int8_yolov8_output_decodes_after_dequantisation() -> None:
    # scale 1/255, zero point -128: q = v * 255 - 128. Box 0.5, 0.5, 0.2, 0.4; scores 0.2, 0.8.
    values = np.array([0.5, 0.5, 0.2, 0.4, 0.2, 0.8], np.float32)
    q = np.round(values * 255 - 128).astype(np.int8)[:, None][None]
    info = TensorInfo("output0", 0, q.shape, "int8", 1 / 255, -128)
    # One candidate is shorter than its 6 channels: shapes cannot say which axis is which,
    # so auto-detection refuses and `format: yolov8` settles it.
    with pytest.raises(UnsupportedModelError, match="format:"):
        detect_format([info])
    decoder = DECODERS["yolov8"]
    decoded = decoder.decode([dequantize(q, info)], 0.5, decoder.bind([info], None, (8, 8)))
    np.testing.assert_allclose(decoded.xyxy, [[0.4, 0.3, 0.6, 0.7]], atol=2 / 255)
    np.testing.assert_allclose(decoded.scores, [0.8], atol=1 / 255)
    assert decoded.class_ids.tolist() == [1]


def _nms(
    boxes: list[list[float]], scores: list[float], classes: list[int], iou: float = 0.5
) -> list[int]:
    keep = nms_per_class(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes, np.int32),
        iou,
    )
    return [int(i) for i in keep]


A = [0.0, 0.0, 0.4, 0.4]
A_SHIFTED = [0.1, 0.0, 0.5, 0.4]  # IoU with A: 0.12 / 0.20 = 0.6
FAR = [0.6, 0.6, 0.9, 0.9]


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "iou", "kept"),
    [
        ([A, A_SHIFTED], [0.9, 0.8], [0, 0], 0.5, [0]),  # same class, 0.6 > 0.5: dropped
        ([A, A_SHIFTED], [0.8, 0.9], [0, 0], 0.5, [1]),  # the better score wins
        ([A, A_SHIFTED], [0.9, 0.8], [0, 1], 0.5, [0, 1]),  # other class: kept
        ([A, A_SHIFTED], [0.9, 0.8], [0, 0], 0.6, [0, 1]),  # IoU equal to threshold: kept
        ([A, FAR, A_SHIFTED], [0.7, 0.9, 0.8], [3, 3, 3], 0.5, [1, 2]),
        ([A, A, A], [0.5, 0.6, 0.7], [2, 2, 2], 0.5, [2]),
        ([], [], [], 0.5, []),
    ],
)
def test_nms_per_class_table(
    boxes: list[list[float]], scores: list[float], classes: list[int], iou: float, kept: list[int]
) -> None:
    assert _nms(boxes, scores, classes, iou) == kept


def test_nms_caps_the_number_of_detections() -> None:
    boxes = np.array([[i, 0, i + 0.5, 1] for i in range(10)], np.float32)
    keep = nms_per_class(
        boxes, np.linspace(0.9, 0.5, 10, dtype=np.float32), np.zeros(10, np.int32), 0.5, 3
    )
    assert keep.tolist() == [0, 1, 2]


def test_box_iou_of_disjoint_and_degenerate_boxes_is_zero() -> None:
    boxes = np.array([FAR, [0.1, 0.1, 0.1, 0.3]], np.float32)
    assert box_iou(np.array(A, np.float32), boxes).tolist() == [0.0, 0.0]


def test_many_candidates_collapse_to_one_box_per_object() -> None:
    """A YOLO head fires on many neighbouring cells per object; NMS leaves one each."""
    rng = np.random.default_rng(4)
    centres = [(0.25, 0.25), (0.75, 0.6)]
    rows = []
    for cx, cy in centres:
        for _ in range(20):
            jitter = rng.uniform(-0.01, 0.01, 2)
            rows.append([cx + jitter[0], cy + jitter[1], 0.2, 0.3, rng.uniform(0.6, 1.0), 0.0, 1.0])
    decoded = _v5(rows)
    keep = nms_per_class(decoded.xyxy, decoded.scores, decoded.class_ids, 0.45)
    assert len(keep) == 2
    found = (decoded.xyxy[keep, :2] + decoded.xyxy[keep, 2:]) / 2
    for cx, cy in centres:
        assert np.min(np.abs(found - [cx, cy]).max(axis=1)) < 0.02
