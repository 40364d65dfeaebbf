"""Decoders drop what no real detector outputs: scores outside 0..1 or not finite, coordinates
that are not finite, boxes that are empty or inverted once clipped. Tables on synthetic
tensors, one row per case; pytest turns any numpy overflow warning into a failure."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edge_app.vision.decoders import DECODERS, TensorInfo, decode_ssd_postprocess
from edge_app.vision.tensors import SCORE_SLACK, finite_rows, has_area, is_probability

INF, NAN = math.inf, math.nan
GOOD = [0.5, 0.5, 0.2, 0.4, 0.9, 0.1, 0.8]  # -> box 0.4, 0.3, 0.6, 0.7; score 0.72; class 1


def _t(shape: tuple[int, ...]) -> TensorInfo:
    return TensorInfo(name="output0", index=0, shape=shape, dtype="float32")


def _v5(rows: list[list[float]]) -> Any:
    decoder = DECODERS["yolov5"]
    tensor = np.array([rows], np.float32)
    return decoder.decode([tensor], 0.5, decoder.bind([_t(tensor.shape)], None, (320, 320)))


def _v8(rows: list[list[float]]) -> Any:
    # the same candidates as columns, class scores already multiplied by objectness
    table = np.array(rows, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # building the input, not decoding it
        cols = np.concatenate([table[:, :4], table[:, 5:] * table[:, 4:5]], axis=1).T
    decoder = DECODERS["yolov8"]
    tensor = np.ascontiguousarray(cols[None])
    return decoder.decode([tensor], 0.5, decoder.bind([_t(tensor.shape)], None, (320, 320)))


# (row, kept?) -- each bad row is bad in exactly one way
YOLO_ROWS = [
    pytest.param([0.5, 0.5, 0.2, 0.4, 1e30, 1e30, 1e30], False, id="score-1e30"),
    pytest.param([0.5, 0.5, 0.2, 0.4, INF, 0.9, 0.9], False, id="objectness-inf"),
    pytest.param([0.5, 0.5, 0.2, 0.4, 0.9, INF, 0.1], False, id="class-inf"),
    pytest.param([0.5, 0.5, 0.2, 0.4, 0.9, NAN, 0.9], False, id="class-nan"),
    pytest.param([0.5, 0.5, 0.2, 0.4, 1.2, 0.9, 0.1], False, id="objectness-1.2"),
    pytest.param([0.5, 0.5, 0.0, 0.4, 0.9, 0.9, 0.1], False, id="zero-width"),
    pytest.param([0.5, 0.5, 0.2, -0.4, 0.9, 0.9, 0.1], False, id="inverted-height"),
    pytest.param([NAN, 0.5, 0.2, 0.4, 0.9, 0.9, 0.1], False, id="x-nan"),
    pytest.param([0.5, INF, 0.2, 0.4, 0.9, 0.9, 0.1], False, id="y-inf"),
    pytest.param([1e30, 1e30, 1e30, 1e30, 0.9, 0.9, 0.1], False, id="coords-1e30"),
    pytest.param([3e38, 0.5, 3e38, 0.4, 0.9, 0.9, 0.1], False, id="coords-overflow"),
    pytest.param([1.5, 1.5, 0.2, 0.2, 0.9, 0.9, 0.1], False, id="outside-the-image"),
    pytest.param([0.5, 0.5, 0.2, 0.4, 1.0, 1.0, 0.0], True, id="score-exactly-1"),
]


@pytest.mark.parametrize("decode", [_v5, _v8], ids=["yolov5", "yolov8"])
@pytest.mark.parametrize(("row", "kept"), YOLO_ROWS)
def test_yolo_decoders_keep_only_plausible_candidates(
    decode: Any, row: list[float], kept: bool
) -> None:
    decoded = decode([GOOD, row])
    assert len(decoded.scores) == (2 if kept else 1)
    # A NaN best score fails the threshold test itself (NaN >= t is False), before counting.
    nan_score = decode is _v8 and any(math.isnan(v) for v in row[4:])
    assert decoded.rejected == (0 if kept or nan_score else 1)
    np.testing.assert_allclose(decoded.xyxy[0], [0.4, 0.3, 0.6, 0.7], atol=1e-6)
    assert np.all(np.isfinite(decoded.scores))
    assert float(decoded.scores.max()) <= 1.0
    assert np.all(has_area(decoded.xyxy))


@pytest.mark.parametrize("decode", [_v5, _v8], ids=["yolov5", "yolov8"])
def test_a_rounding_step_above_one_is_clamped_to_one(decode: Any) -> None:
    over = 1.0 + SCORE_SLACK / 2
    decoded = decode([[0.5, 0.5, 0.2, 0.4, over, 1.0, 0.0]])
    assert decoded.scores.tolist() == [1.0]
    assert decoded.rejected == 0


def test_the_issue_model_1e30_everywhere_yields_nothing() -> None:
    # 85 candidates of 1e30: before, 85 detections scored 1e30 (or inf) with empty boxes.
    table = [[1e30] * 7] * 85
    for decode in (_v5, _v8):
        decoded = decode(table)
        assert (len(decoded.scores), decoded.rejected) == (0, 85)


def _ssd(boxes: list[list[float]], scores: list[float], classes: list[float]) -> Any:
    return decode_ssd_postprocess(
        np.array([boxes], np.float32),
        np.array([classes], np.float32),
        np.array([scores], np.float32),
        np.array([len(scores)], np.float32),
        0.5,
    )


SSD_GOOD = ([0.1, 0.2, 0.3, 0.4], 0.9, 3.0)  # ymin, xmin, ymax, xmax; score; class


@pytest.mark.parametrize(
    ("box", "score", "cls", "kept"),
    [
        pytest.param([0.1, 0.2, 0.3, 0.4], 1e30, 1.0, False, id="score-1e30"),
        pytest.param([0.1, 0.2, 0.3, 0.4], INF, 1.0, False, id="score-inf"),
        pytest.param([0.1, 0.2, 0.3, 0.4], 1.5, 1.0, False, id="score-1.5"),
        pytest.param([0.1, 0.2, 0.1, 0.4], 0.8, 1.0, False, id="zero-height"),
        pytest.param([0.3, 0.2, 0.1, 0.4], 0.8, 1.0, False, id="inverted"),
        pytest.param([1.2, 0.2, 1.5, 0.4], 0.8, 1.0, False, id="below-the-image"),
        pytest.param([-INF, -INF, INF, INF], 0.8, 1.0, False, id="infinite-box"),
        pytest.param([NAN, 0.2, 0.3, 0.4], 0.8, 1.0, False, id="nan-coordinate"),
        pytest.param([0.1, 0.2, 0.3, 0.4], 0.8, NAN, False, id="nan-class"),
        pytest.param([0.1, 0.2, 0.3, 0.4], 0.8, 1e30, False, id="class-1e30"),
        pytest.param([0.1, 0.2, 0.3, 0.4], 0.8, -1.0, False, id="negative-class"),
        pytest.param([-0.1, 0.2, 0.3, 1.4], 0.8, 1.0, True, id="partly-outside-clipped"),
    ],
)
def test_ssd_decoder_keeps_only_plausible_rows(
    box: list[float], score: float, cls: float, kept: bool
) -> None:
    good_box, good_score, good_cls = SSD_GOOD
    decoded = _ssd([good_box, box], [good_score, score], [good_cls, cls])
    assert len(decoded.scores) == (2 if kept else 1)
    assert decoded.rejected == (0 if kept else 1)
    np.testing.assert_allclose(decoded.xyxy[0], [0.2, 0.1, 0.4, 0.3], atol=1e-6)
    assert decoded.class_ids[0] == 3


@pytest.mark.parametrize("count", [INF, NAN, 1e30, -INF])
def test_ssd_count_that_is_not_a_count(count: float) -> None:
    decoded = decode_ssd_postprocess(
        np.array([[[0.1, 0.2, 0.3, 0.4]]], np.float32),
        np.array([[1.0]], np.float32),
        np.array([[0.9]], np.float32),
        np.array([count], np.float32),
        0.5,
    )
    assert len(decoded.scores) == (1 if count == 1e30 else 0)  # 1e30 is capped at N


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0, 1.0 + SCORE_SLACK], [True, True, True, True]),
        ([-0.01, 1.01, INF, -INF, NAN, 1e30], [False] * 6),
    ],
)
def test_is_probability(values: list[float], expected: list[bool]) -> None:
    assert is_probability(np.array(values, np.float32)).tolist() == expected


def test_finite_rows_and_has_area() -> None:
    rows = np.array([[0, 0, 1, 1], [0, NAN, 1, 1], [0, 0, INF, 1], [0, 0, 2e6, 1]], np.float32)
    assert finite_rows(rows).tolist() == [True, False, False, False]
    boxes = np.array([[0, 0, 1, 1], [0.5, 0, 0.5, 1], [0.6, 0, 0.4, 1], [0, NAN, 1, 1]])
    assert has_area(boxes.astype(np.float32)).tolist() == [True, False, False, False]
