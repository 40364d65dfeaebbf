"""Output decoders on synthetic tensors: layout matching, binding, decoding, refusal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.errors import UnsupportedModelError
from edge_app.vision.decoders import (
    DECODERS,
    SsdPostprocessDecoder,
    TensorInfo,
    decode_ssd_postprocess,
    detect_format,
)

N = 5


def _t(name: str, index: int, shape: tuple[int, ...], dtype: str = "float32") -> TensorInfo:
    return TensorInfo(name=name, index=index, shape=shape, dtype=dtype)


TF1 = [
    _t("TFLite_Detection_PostProcess", 0, (1, N, 4)),
    _t("TFLite_Detection_PostProcess:1", 1, (1, N)),
    _t("TFLite_Detection_PostProcess:2", 2, (1, N)),
    _t("TFLite_Detection_PostProcess:3", 3, (1,)),
]


def _arrays(
    boxes: list[list[float]], classes: list[float], scores: list[float], count: int
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    return (
        np.array([boxes], np.float32),
        np.array([classes], np.float32),
        np.array([scores], np.float32),
        np.array([count], np.float32),
    )


def test_decode_converts_yxyx_to_xyxy_and_keeps_model_order() -> None:
    boxes, classes, scores, count = _arrays(
        [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], [3, 0], [0.9, 0.6], 2
    )
    xyxy, out_scores, ids, _ = decode_ssd_postprocess(boxes, classes, scores, count, 0.5)
    np.testing.assert_allclose(xyxy, [[0.2, 0.1, 0.4, 0.3], [0.6, 0.5, 0.8, 0.7]])
    np.testing.assert_allclose(out_scores, [0.9, 0.6])
    assert ids.tolist() == [3, 0]
    assert (xyxy.dtype, out_scores.dtype, ids.dtype) == (
        np.dtype(np.float32),
        np.dtype(np.float32),
        np.dtype(np.int32),
    )


@pytest.mark.parametrize(
    ("threshold", "count", "expected_scores"),
    [
        (0.5, 4, [0.9, 0.5, 0.7]),  # threshold is inclusive
        (0.51, 4, [0.9, 0.7]),
        (0.0, 4, [0.9, 0.5, 0.7, 0.2]),
        (0.5, 2, [0.9, 0.5]),  # rows past `count` are padding, however high their score
        (0.5, 0, []),
        (0.5, 99, [0.9, 0.5, 0.7, 0.95]),  # a count larger than N is capped
        (0.5, -3, []),
        (1.0, 4, []),
    ],
)
def test_decode_respects_threshold_and_count(
    threshold: float, count: int, expected_scores: list[float]
) -> None:
    box = [0.0, 0.0, 1.0, 1.0]
    arrays = _arrays([box] * 5, [1, 2, 3, 4, 5], [0.9, 0.5, 0.7, 0.2, 0.95], count)
    xyxy, scores, ids, _ = decode_ssd_postprocess(*arrays, threshold)
    np.testing.assert_allclose(scores, expected_scores)
    assert xyxy.shape == (len(expected_scores), 4)
    assert ids.shape == (len(expected_scores),)


def test_decode_clips_boxes_to_the_frame() -> None:
    arrays = _arrays([[-0.2, 0.5, 1.3, 1.01], [0.1, -0.0001, 0.2, 0.3]], [0, 0], [0.8, 0.8], 2)
    xyxy, _, _, _ = decode_ssd_postprocess(*arrays, 0.5)
    np.testing.assert_allclose(xyxy, [[0.5, 0.0, 1.0, 1.0], [0.0, 0.1, 0.3, 0.2]])
    assert float(xyxy.min()) >= 0.0
    assert float(xyxy.max()) <= 1.0


def test_matches_the_postprocess_layout_in_any_order() -> None:
    decoder = SsdPostprocessDecoder()
    assert decoder.matches(TF1)
    assert decoder.matches(list(reversed(TF1)))
    assert detect_format(TF1) == "ssd_postprocess"
    assert "ssd_postprocess" in DECODERS


@pytest.mark.parametrize(
    "outputs",
    [
        TF1[:3],
        [*TF1, _t("extra", 4, (1,))],
        [_t("yolo", 0, (1, 25200, 85))],
        [_t("b", 0, (1, N, 4)), _t("c", 1, (1, N)), _t("s", 2, (1, N + 1)), _t("n", 3, (1,))],
        [_t("b", 0, (1, N, 4), "uint8"), *TF1[1:]],
        [_t("b", 0, (2, N, 4)), _t("c", 1, (2, N)), _t("s", 2, (2, N)), _t("n", 3, (2,))],
    ],
    ids=["three", "five", "yolo", "mismatched-n", "quantized", "batch-2"],
)
def test_other_layouts_do_not_match(outputs: list[TensorInfo]) -> None:
    assert not SsdPostprocessDecoder().matches(outputs)


def test_binding_uses_tf1_names_whatever_the_order() -> None:
    shuffled = [TF1[2], TF1[3], TF1[0], TF1[1]]  # scores, count, boxes, classes
    binding = SsdPostprocessDecoder().bind(shuffled)
    assert binding == (2, 3, 0, 1)  # positions of boxes, classes, scores, count


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("detection_scores", "detection_classes"), (1, 0)),
        (("detection_classes", "detection_scores"), (0, 1)),
    ],
)
def test_binding_uses_descriptive_names(names: tuple[str, str], expected: tuple[int, int]) -> None:
    outputs = [
        _t(names[0], 0, (1, N)),
        _t(names[1], 1, (1, N)),
        _t("boxes", 2, (1, N, 4)),
        _t("num", 3, (1,)),
    ]
    assert SsdPostprocessDecoder().bind(outputs)[1:3] == expected


ANONYMOUS = [
    _t("Identity_1", 0, (1, N)),
    _t("Identity", 1, (1, N, 4)),
    _t("Identity_3", 2, (1,)),
    _t("Identity_2", 3, (1, N)),
]


def _sample(first: list[float], second: list[float]) -> list[NDArray[Any]]:
    return [
        np.array([first], np.float32),
        np.zeros((1, N, 4), np.float32),
        np.array([N], np.float32),
        np.array([second], np.float32),
    ]


@pytest.mark.parametrize(
    ("first", "second", "classes_at", "scores_at"),
    [
        # scores are fractions, classes whole numbers
        ([0.7, 0.6, 0.3, 0.1, 0.1], [0, 17, 2, 2, 0], 3, 0),
        ([0, 17, 2, 2, 0], [0.7, 0.6, 0.3, 0.1, 0.1], 0, 3),
        # both whole (scores saturated at 1 and 0): classes are the ones above 1
        ([1, 1, 0, 0, 0], [3, 1, 5, 5, 0], 3, 0),
    ],
)
def test_binding_falls_back_to_values_of_one_invoke(
    first: list[float], second: list[float], classes_at: int, scores_at: int
) -> None:
    binding = SsdPostprocessDecoder().bind(ANONYMOUS, _sample(first, second))
    assert binding == (1, classes_at, scores_at, 2)


def test_binding_without_any_clue_assumes_the_ops_own_order() -> None:
    zeros = [0.0] * N
    assert SsdPostprocessDecoder().bind(ANONYMOUS, _sample(zeros, zeros)) == (1, 0, 3, 2)
    assert SsdPostprocessDecoder().bind(ANONYMOUS) == (1, 0, 3, 2)


def test_decode_through_a_binding_reads_the_right_arrays() -> None:
    decoder = SsdPostprocessDecoder()
    arrays = [
        np.array([[0.9, 0.2, 0.1, 0.0, 0.0]], np.float32),  # scores
        np.array([[[0.1, 0.2, 0.3, 0.4]] * N], np.float32),  # boxes
        np.array([3], np.float32),  # count
        np.array([[7, 1, 1, 0, 0]], np.float32),  # classes
    ]
    decoded = decoder.decode(arrays, 0.5, decoder.bind(ANONYMOUS, arrays))
    assert decoded.class_ids.tolist() == [7]
    np.testing.assert_allclose(decoded.scores, [0.9])
    np.testing.assert_allclose(decoded.xyxy, [[0.2, 0.1, 0.4, 0.3]])


def test_unsupported_layout_error_names_every_tensor() -> None:
    inputs = [_t("images", 0, (1, 640, 640, 3))]
    # A YOLOv8 head plus a recurrent-state output: no decoder takes the extra tensor.
    outputs = [_t("output0", 409, (1, 84, 8400)), _t("state_out", 410, (1, 256))]
    with pytest.raises(UnsupportedModelError) as info:
        detect_format(outputs, inputs, model="yolov8n.tflite")
    message = str(info.value)
    assert "yolov8n.tflite" in message
    assert "images [1, 640, 640, 3] float32" in message
    assert "output0 [1, 84, 8400] float32" in message
    assert "state_out [1, 256] float32" in message
    assert "ssd_postprocess" in message  # says what it does understand
    assert "yolov8" in message


def test_bind_refuses_a_layout_it_does_not_match() -> None:
    with pytest.raises(UnsupportedModelError, match="output0"):
        SsdPostprocessDecoder().bind([_t("output0", 0, (1, 84, 8400))])


def test_tensor_info_from_interpreter_details() -> None:
    details = {
        "name": "normalized_input_image_tensor",
        "index": 175,
        "shape": np.array([1, 300, 300, 3], np.int32),
        "dtype": np.uint8,
        "quantization": (0.0078125, 128),
    }
    info = TensorInfo.from_details(details)
    assert info == TensorInfo(
        "normalized_input_image_tensor", 175, (1, 300, 300, 3), "uint8", 0.0078125, 128
    )
    assert str(info) == (
        "normalized_input_image_tensor [1, 300, 300, 3] uint8 (scale 0.0078125, zero point 128)"
    )
