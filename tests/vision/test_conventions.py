"""Every detector format runs by its reference exporter's conventions, with nothing set by hand.

The models are built in the test (``build_watching_model``): each scores its one candidate
high only when the input it is fed holds the expected channel at the expected scale in a
watched patch. A 64 x 48 frame is letterboxed into the 32 x 32 input: centred, the image
sits at rows 4..27; top-left, at rows 0..23.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.config import DetectorConfig
from edge_app.models import Conventions, write_sidecar
from edge_app.vision import open_detector
from tests.vision.tflite_builder import build_watching_model

NOISE = [0.5, 0.5, 0.1, 0.1, 0.0, 0.0]


def _rows(first: list[float]) -> NDArray[np.float32]:
    return np.array([[first] + [NOISE] * 7], np.float32)  # [1, 8, 6]: rows, one class


def _frame_with_patch(bgr: tuple[int, int, int], where: str) -> NDArray[np.uint8]:
    frame = np.full((48, 64, 3), 90, np.uint8)
    if where == "top_left":
        frame[0:12, 0:16] = bgr  # model px x 0..8, y 0..6 (top-left letterbox)
    else:
        frame[16:32, 24:40] = bgr  # the centre of the frame, the centre of the input
    return frame


def _yolox(tmp_path: Path) -> Path:
    # Megvii's YOLOX tools: BGR, 0..255, image at the top-left. Watches blue (channel 0 of
    # BGR) at 255 in the top-left corner, where a centred letterbox puts padding.
    table = _rows([0.25, 0.25, 0.25, 0.25, 0.0, 1.0])
    return build_watching_model(
        tmp_path / "yolox.tflite",
        table,
        (0, 0, 4),
        watch=(1, 1, 5, 5),
        channel=0,
        level=200.0,
        gain=0.1,
    )


def _ultralytics(tmp_path: Path, layout: str) -> Path:
    # Ultralytics YOLOv5/YOLOv8: RGB, 0..1, centred. Watches red (channel 0 of RGB) at 1.0.
    table = _rows([0.5, 0.5, 0.25, 0.25, 0.0, 1.0])
    score_at: tuple[int, ...] = (0, 0, 4)
    if layout == "yolov8":  # columns, no objectness: [1, 4 + C, N]
        table = np.concatenate([table[..., :4], table[..., 5:]], axis=2).transpose(0, 2, 1)
        table = np.ascontiguousarray(table)
        score_at = (0, 4, 0)
    return build_watching_model(
        tmp_path / f"{layout}.tflite",
        table,
        score_at,
        watch=(14, 14, 18, 18),
        channel=0,
        level=0.5,
        gain=20.0,
    )


CASES = [
    # format set in the config (None: detected from the tensors), the model, the frame
    pytest.param("yolox", _yolox, (255, 0, 0), "top_left", id="yolox"),
    pytest.param(None, lambda p: _ultralytics(p, "yolov5"), (0, 0, 255), "center", id="yolov5"),
    pytest.param(None, lambda p: _ultralytics(p, "yolov8"), (0, 0, 255), "center", id="yolov8"),
]


def _scores(config: DetectorConfig, frame: NDArray[np.uint8]) -> list[float]:
    with open_detector(config) as detector:
        return [d.score for d in detector.detect(frame)]


@pytest.mark.parametrize(("fmt", "build", "bgr", "where"), CASES)
def test_reference_conventions_detect_with_only_the_format_set(
    tmp_path: Path, fmt: str | None, build: object, bgr: tuple[int, int, int], where: str
) -> None:
    path = build(tmp_path)  # type: ignore[operator]
    config = DetectorConfig(model=str(path), format=fmt)
    scores = _scores(config, _frame_with_patch(bgr, where))
    assert len(scores) == 1
    assert scores[0] > 0.9
    # The same model fed another way sees nothing: the conventions are what made it work.
    wrong = DetectorConfig(model=str(path), format=fmt, channel_order="bgr", input_range="0..1")
    if fmt == "yolox":
        wrong = DetectorConfig(model=str(path), format=fmt, letterbox_align="center")
    assert _scores(wrong, _frame_with_patch(bgr, where)) == []


def test_a_sidecar_gives_the_format_and_the_config_overrides_it(tmp_path: Path) -> None:
    path = _yolox(tmp_path)
    frame = _frame_with_patch((255, 0, 0), "top_left")
    labels = tmp_path / "labels.txt"
    labels.write_text("forklift\n")
    write_sidecar(path, Conventions(format="yolox", labels="labels.txt"))
    with open_detector(DetectorConfig(model=str(path))) as detector:
        found = list(detector.detect(frame))
    assert [d.label for d in found] == ["forklift"]
    assert detector.format == "yolox"
    # A preprocessing field set in the config wins over the sidecar and the format.
    assert _scores(DetectorConfig(model=str(path), channel_order="rgb"), frame) == []


def test_a_bad_sidecar_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = _yolox(tmp_path)
    (tmp_path / "yolox.tflite.yaml").write_text("format: yolox\nchannel_order: grb\n")
    with pytest.raises(Exception, match=r"sidecar .*yolox\.tflite\.yaml is invalid: channel_order"):
        open_detector(DetectorConfig(model=str(path)))
