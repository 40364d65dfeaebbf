"""A model that scores nothing on many frames is reported once, with what to try."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_app.vision import TFLiteDetector
from edge_app.vision.silence import SILENT_FRAMES
from tests.vision.tflite_builder import build_constant_model

FRAME = np.full((48, 64, 3), 90, np.uint8)


def _rows(objectness: float) -> np.ndarray:
    first = [0.5, 0.5, 0.25, 0.25, objectness, 1.0]
    return np.array([[first] + [[0.5, 0.5, 0.1, 0.1, 0.0, 0.0]] * 7], np.float32)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no candidate scoring" in r.getMessage()]


def test_a_silent_model_is_reported_once_naming_probe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = build_constant_model(tmp_path / "silent.tflite", _rows(0.0))
    caplog.set_level(logging.WARNING, "edge_app.vision")
    with TFLiteDetector(path, threads=1, fmt="yolov5") as detector:
        for _ in range(SILENT_FRAMES - 1):
            assert len(detector.detect(FRAME)) == 0
        assert _warnings(caplog) == []
        for _ in range(SILENT_FRAMES):
            detector.detect(FRAME)
    [message] = _warnings(caplog)
    assert f"edge-app models probe {path}" in message
    assert "channel order, input range, letterbox alignment" in message


def test_weak_candidates_show_the_model_responds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = build_constant_model(tmp_path / "weak.tflite", _rows(0.1))
    caplog.set_level(logging.WARNING, "edge_app.vision")
    with TFLiteDetector(path, threads=1, fmt="yolov5", score_threshold=0.5) as detector:
        for _ in range(SILENT_FRAMES + 5):
            # the weak candidate settles the watch, and is still below the threshold
            assert len(detector.detect(FRAME)) == 0
        detector.set_score_threshold(0.05)
        assert len(detector.detect(FRAME)) == 1
    assert _warnings(caplog) == []
