"""``edge-app models probe``: the variant that detects is found, on a real clip with a real
model, and on a YOLOX-convention model built in the test; ``--write`` makes it stick."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from edge_app.cli import main
from edge_app.cli.probe import choose, probe_model
from edge_app.convert.frames import sample_frames
from edge_app.models import read_sidecar
from tests.vision.test_conventions import _frame_with_patch, _yolox


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.realworld
def test_probe_keeps_the_real_ssd_on_its_reference_conventions(realworld: Path) -> None:
    model = realworld / "models" / "ssd_mobilenet_v1_coco_quant.tflite"
    clip = realworld / "videos" / "one-by-one-person-detection.mp4"
    frames = sample_frames([clip], 12, 0, (300, 300)).calibration
    trials = probe_model(
        model, list(frames), realworld / "models" / "ssd_mobilenet_v1_coco_labels.txt"
    )
    best = choose(trials)
    assert (best.conventions.format, best.conventions.resize) == ("ssd_postprocess", "stretch")
    assert best.conventions.channel_order == "rgb"
    assert best.frames_with_detections == 12  # a person in every sampled frame
    by_order = {t.conventions.channel_order: t for t in trials if t.conventions.resize == "stretch"}
    assert by_order["rgb"].mean_best_score > by_order["bgr"].mean_best_score


def test_probe_finds_and_writes_the_yolox_conventions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = _yolox(tmp_path)
    image = tmp_path / "patch.png"
    cv2.imwrite(str(image), _frame_with_patch((255, 0, 0), "top_left"))
    code, out, err = _run(capsys, "models", "probe", str(model), str(image), "--write")
    assert code == 0, err
    assert "best: format yolox, letterbox top_left, bgr, 0..255; wrote" in out
    conventions = read_sidecar(model)
    assert conventions is not None
    assert (conventions.format, conventions.channel_order) == ("yolox", "bgr")
    code, out, err = _run(capsys, "detect", str(image), "--model", str(model), "--json")
    assert code == 0, err
    assert len(json.loads(out)["results"][0]["detections"]) == 1  # nothing set by hand


def test_probe_errors_are_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = tmp_path / "x.tflite"
    text.write_text("no model")
    image = tmp_path / "i.png"
    cv2.imwrite(str(image), _frame_with_patch((0, 0, 0), "center"))
    code, _, err = _run(capsys, "models", "probe", str(text), str(image))
    assert code == 2
    assert err.startswith("edge-app models probe: error: ")
    model = shutil.copy(_yolox(tmp_path), tmp_path / "m.tflite")
    code, _, err = _run(capsys, "models", "probe", str(model), str(tmp_path / "missing.mp4"))
    assert (code, "does not exist" in err) == (2, True)
