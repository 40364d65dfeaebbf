"""Preprocessing options: letterbox geometry and its inverse, channel order, input ranges."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.config import DetectorConfig
from edge_app.vision.detector import preprocess_overrides
from edge_app.vision.preprocess import (
    BoxMap,
    InputSpec,
    PreprocessOptions,
    Preprocessor,
    default_options,
    letterbox_geometry,
)


@pytest.mark.parametrize(
    ("frame", "model", "align", "expected"),
    [
        ((640, 480), (320, 320), "center", (320, 240, 0, 40)),
        ((640, 480), (320, 320), "top_left", (320, 240, 0, 0)),
        ((480, 640), (320, 320), "center", (240, 320, 40, 0)),
        ((1920, 1080), (640, 640), "center", (640, 360, 0, 140)),
        ((300, 300), (300, 300), "center", (300, 300, 0, 0)),
        ((100, 50), (64, 48), "center", (64, 32, 0, 8)),  # limited by width
    ],
)
def test_letterbox_geometry_table(
    frame: tuple[int, int],
    model: tuple[int, int],
    align: Any,
    expected: tuple[int, int, int, int],
) -> None:
    assert letterbox_geometry(frame, model, align) == expected


@pytest.mark.parametrize("align", ["center", "top_left"])
def test_box_map_undoes_the_letterbox(align: Any) -> None:
    # A box in the 640 x 480 frame, letterboxed into 320 x 320 (scale 0.5, pad 40 rows when
    # centred): frame pixels (64, 96)-(320, 384) -> model pixels (32, 48 + dy)-(160, 192 + dy).
    dy = 40 if align == "center" else 0
    model_box = np.array([[32 / 320, (48 + dy) / 320, 160 / 320, (192 + dy) / 320]], np.float32)
    frame_box = BoxMap.for_letterbox((640, 480), (320, 320), align).apply(model_box)
    np.testing.assert_allclose(frame_box, [[0.1, 0.2, 0.5, 0.8]], atol=1e-6)


def test_box_map_clips_boxes_reaching_into_the_padding() -> None:
    box = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)  # the whole model input, padding too
    out = BoxMap.for_letterbox((640, 480), (320, 320)).apply(box)
    np.testing.assert_allclose(out, [[0.0, 0.0, 1.0, 1.0]])


def test_identity_box_map_returns_its_input() -> None:
    box = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    assert BoxMap().apply(box) is box


def _spec(dtype: Any, height: int = 8, width: int = 8) -> InputSpec:
    details = {
        "name": "images",
        "index": 0,
        "shape": np.array([1, height, width, 3]),
        "dtype": dtype,
        "quantization": (0.0, 0),
    }
    return InputSpec.from_details(details)


def _frame() -> NDArray[np.uint8]:
    # 8 x 4 frame (width 8, height 4): blue 10, green 20, red 30 everywhere.
    frame = np.empty((4, 8, 3), np.uint8)
    frame[:] = (10, 20, 30)
    return frame


def test_letterbox_pads_with_the_pad_value_around_the_centred_image() -> None:
    buffer = np.zeros((1, 8, 8, 3), np.uint8)
    options = PreprocessOptions(resize="letterbox", pad_value=7)
    box_map = Preprocessor(_spec(np.uint8), lambda: buffer, options=options)(_frame())
    # 8 x 4 into 8 x 8: 8 x 4 image at rows 2..5, padding rows 0..1 and 6..7.
    assert (buffer[0, :2] == 7).all()
    assert (buffer[0, 6:] == 7).all()
    assert (buffer[0, 2:6] == (30, 20, 10)).all()  # RGB
    assert box_map == BoxMap(1.0, 2.0, 0.0, -0.5)


def test_top_left_letterbox_pads_below_only() -> None:
    buffer = np.zeros((1, 8, 8, 3), np.uint8)
    options = PreprocessOptions(resize="letterbox", pad_value=7, align="top_left")
    Preprocessor(_spec(np.uint8), lambda: buffer, options=options)(_frame())
    assert (buffer[0, :4] == (30, 20, 10)).all()
    assert (buffer[0, 4:] == 7).all()


def test_stretch_fills_the_whole_input_and_maps_boxes_unchanged() -> None:
    buffer = np.zeros((1, 8, 8, 3), np.uint8)
    box_map = Preprocessor(_spec(np.uint8), lambda: buffer)(_frame())
    assert (buffer[0] == (30, 20, 10)).all()
    assert box_map.is_identity


@pytest.mark.parametrize(
    ("dtype", "order", "input_range", "expected"),
    [
        (np.uint8, "bgr", "-1..1", (10, 20, 30)),
        (np.uint8, "rgb", "0..1", (30, 20, 10)),  # quantized: pixels as they are
        (np.int8, "rgb", "0..1", (30 - 128, 20 - 128, 10 - 128)),
        (np.int8, "bgr", "0..1", (10 - 128, 20 - 128, 30 - 128)),
        (np.float32, "rgb", "0..1", (30 / 255, 20 / 255, 10 / 255)),
        (np.float32, "bgr", "0..255", (10.0, 20.0, 30.0)),
        (np.float32, "rgb", "-1..1", ((30 - 127.5) / 127.5, -0.84313726, (10 - 127.5) / 127.5)),
    ],
)
def test_channel_order_and_input_range_table(
    dtype: Any, order: Any, input_range: Any, expected: tuple[float, float, float]
) -> None:
    buffer = np.zeros((1, 4, 8, 3), dtype)
    options = PreprocessOptions(channel_order=order, input_range=input_range)
    Preprocessor(_spec(dtype, 4, 8), lambda: buffer, options=options)(_frame())
    np.testing.assert_allclose(buffer[0, 0, 0], expected, atol=1e-6)
    assert (buffer[0] == buffer[0, 0, 0]).all()


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="pad_value"):
        PreprocessOptions(pad_value=300)
    with pytest.raises(ValueError, match="input_range"):
        PreprocessOptions(input_range="0..2")  # type: ignore[arg-type]


def test_defaults_follow_the_format() -> None:
    assert default_options("ssd_postprocess") == PreprocessOptions("stretch", 114, "center")
    yolo = default_options("yolov8")
    assert (yolo.resize, yolo.input_range, yolo.pad_value) == ("letterbox", "0..1", 114)


def test_config_overrides_only_what_it_sets() -> None:
    plain = preprocess_overrides(DetectorConfig())
    assert "resize" not in plain
    assert "input_range" not in plain
    forced = preprocess_overrides(
        DetectorConfig(resize="letterbox", input_range="0..255", channel_order="bgr", pad_value=0)
    )
    assert forced["resize"] == "letterbox"
    assert forced["input_range"] == "0..255"
    assert (forced["channel_order"], forced["pad_value"]) == ("bgr", 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float32])
@pytest.mark.parametrize(
    "options",
    [
        PreprocessOptions(),
        PreprocessOptions(resize="letterbox", pad_value=3, channel_order="bgr"),
        PreprocessOptions(resize="letterbox", align="top_left", input_range="0..1"),
    ],
)
def test_prepare_then_load_writes_what_the_one_step_call_writes(
    dtype: Any, options: PreprocessOptions
) -> None:
    """The split used by the reader thread gives the tensor and box map of the direct call."""
    frame = np.random.default_rng(1).integers(0, 256, (30, 50, 3), np.uint8)
    direct, split = np.zeros((1, 16, 12, 3), dtype), np.zeros((1, 16, 12, 3), dtype)
    spec = _spec(dtype, 16, 12)
    want = Preprocessor(spec, lambda: direct, options=options)(frame)
    loader = Preprocessor(spec, lambda: split, options=options)
    prepared = Preprocessor(spec, lambda: np.zeros(0), options=options).prepare(frame)
    assert prepared.pixels.shape == (16, 12, 3)
    assert loader.load(prepared) == want
    np.testing.assert_array_equal(split, direct)


def test_load_refuses_input_prepared_for_another_model_input() -> None:
    buffer = np.zeros((1, 8, 8, 3), np.uint8)
    other = Preprocessor(_spec(np.uint8, 4, 8), lambda: buffer).prepare(_frame())
    with pytest.raises(ValueError, match="prepare the frame with this detector"):
        Preprocessor(_spec(np.uint8), lambda: buffer).load(other)
    assert not buffer.any()  # nothing was written
