"""``detector.delegate``: the Edge TPU through the runtime's real delegate loader.

This machine has no Edge TPU and no ``libedgetpu.so.1``, so the error path is what can be
tested for real: the dynamic loader is asked for the library and the error says what to
install. ``delegate: none`` (the default) must run exactly as before.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from edge_app.config import DetectorConfig
from edge_app.domain import Image, as_image
from edge_app.errors import ModelError
from edge_app.vision import TFLiteDetector, load_interpreter, open_detector
from simulator.scene import SceneTruth


def open_frames(clip: Path, truth: SceneTruth) -> Iterator[Image]:
    """Frames of the generated scene in which the truth has at least one object."""
    capture = cv2.VideoCapture(str(clip))
    try:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            if truth.boxes[index]:
                yield as_image(image)
            index += 1
    finally:
        capture.release()


def _edgetpu_installed() -> bool:
    try:
        ctypes.CDLL("libedgetpu.so.1")
    except OSError:
        return False
    return True


needs_no_edgetpu = pytest.mark.skipif(
    _edgetpu_installed(), reason="libedgetpu.so.1 is installed here: the error path cannot run"
)


@needs_no_edgetpu
def test_edgetpu_without_its_runtime_says_what_to_install(default_model: Path) -> None:
    config = DetectorConfig(model=str(default_model), delegate="edgetpu")
    with pytest.raises(ModelError) as err:
        open_detector(config)
    message = str(err.value)
    assert "delegate: edgetpu needs libedgetpu.so.1" in message
    assert "install the Edge TPU runtime" in message
    assert "libedgetpu1-std" in message
    assert "set delegate: none" in message


@needs_no_edgetpu
def test_edgetpu_error_comes_before_the_model_is_read(tmp_path: Path) -> None:
    # the delegate is checked first: even a model file that is not a model gets the
    # accelerator's error, which is the one to fix first
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match=r"libedgetpu\.so\.1"):
        load_interpreter(bogus, 1, "edgetpu")


@needs_no_edgetpu
def test_run_with_edgetpu_missing_exits_2_with_the_hint(
    tmp_path: Path, scene: tuple[Path, SceneTruth], default_model: Path
) -> None:
    clip, _ = scene
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "device": {"thing_name": "x", "data_dir": "data"},
                "cameras": [{"name": "a", "source": {"type": "file", "path": str(clip)}}],
                "detector": {"model": "ssd_mobilenet_v2_coco", "delegate": "edgetpu"},
                "uplink": {"enabled": False},
            }
        )
    )
    env = {**os.environ, "EDGE_APP_MODEL_DIR": str(default_model.parent)}
    out = subprocess.run(
        [sys.executable, "-m", "edge_app", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert "install the Edge TPU runtime" in out.stderr
    assert "Traceback" not in out.stderr


def test_delegate_none_is_the_default_and_unchanged(
    default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    assert DetectorConfig().delegate == "none"
    clip, truth = scene
    frames = list(open_frames(clip, truth))
    with (
        open_detector(DetectorConfig(model=str(default_model), delegate="none")) as explicit,
        TFLiteDetector(default_model, score_threshold=0.5) as plain,
    ):
        assert "+" not in explicit.runtime_name  # no delegate named in the runtime
        assert explicit.runtime_name == plain.runtime_name
        found = [(explicit.detect(f), plain.detect(f)) for f in frames[::5]]
    assert sum(len(a) for a, _ in found) > 0
    for a, b in found:
        assert np.array_equal(a.xyxy, b.xyxy)
        assert np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.class_ids, b.class_ids)


def test_an_unknown_delegate_is_refused_by_the_schema() -> None:
    with pytest.raises(ValidationError, match="delegate"):
        DetectorConfig(delegate="gpu")
