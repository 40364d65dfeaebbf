"""``models convert`` on a Keras detector trained in the test: float32, float16 and int8
(calibrated on a real clip and the scene), loaded by the daemon's detector, checked against
the source; registered with its lineage; and every bad input refused with a clear error."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.cli import main
from edge_app.config import DetectorConfig
from edge_app.convert import ConvertOptions, convert_model
from edge_app.errors import EdgeAppError
from edge_app.models import Registry, sha256_file
from edge_app.vision import open_detector
from tests.convert.conftest import Trained

CLIP = "videos/one-by-one-person-detection.mp4"


def _quiet(line: str) -> None:
    del line


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _scene_frames(trained: Trained) -> list[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """Scene frames with one fully visible object, and its true box."""
    capture = cv2.VideoCapture(str(trained.scene))
    found = []
    for boxes in trained.truth.boxes:
        ok, frame = capture.read()
        if ok and len(boxes) == 1 and boxes[0].visible == 1.0:
            found.append((frame, boxes[0].bbox))
    capture.release()
    return found


@pytest.mark.realworld
@pytest.mark.parametrize(
    ("source", "quantize", "io_type", "least"),
    [
        ("keras", "none", "uint8", 0.99),
        ("saved", "float16", "uint8", 0.99),
        ("saved", "int8", "uint8", 0.85),
        ("keras", "int8", "int8", 0.85),
    ],
)
def test_converted_models_run_in_the_daemon_and_agree_with_the_source(
    trained: Trained,
    realworld: Path,
    tmp_path: Path,
    source: str,
    quantize: str,
    io_type: str,
    least: float,
) -> None:
    out = tmp_path / f"tiny-{quantize}.tflite"
    options = ConvertOptions(
        source=trained.keras_file if source == "keras" else trained.saved_model,
        out=out,
        calibration=(realworld / CLIP, trained.scene),
        quantize=quantize,
        frames=40,
        held_out=20,
        io_type=io_type,
        min_agreement=least,
    )
    report = convert_model(options, _quiet)
    assert report.written
    assert report.agreement.source_detections >= 5  # something was there to agree on
    assert report.agreement.agreement >= least
    assert report.conventions.format == "yolov5"
    # The daemon's detector runs the written model by its sidecar alone, and finds the
    # scene's objects where they are.
    frames = _scene_frames(trained)
    with open_detector(DetectorConfig(model=str(out))) as detector:
        start = time.perf_counter()
        hits = [
            any(_iou(d.bbox, box) > 0.5 for d in detector.detect(frame)) for frame, box in frames
        ]
        per_frame_ms = 1000 * (time.perf_counter() - start) / len(frames)
    assert sum(hits) >= 0.7 * len(frames)
    print(  # the figures of docs/models.md
        f"\n{source} {quantize}/{io_type}: {report.bytes} bytes, invoke {report.invoke_ms:.3f} "
        f"ms, detect {per_frame_ms:.2f} ms/frame, agreement {report.agreement.agreement:.3f}, "
        f"mean IoU {report.agreement.mean_iou:.3f}, score delta "
        f"{report.agreement.mean_score_delta:.4f}, hits {sum(hits)}/{len(frames)}"
    )


@pytest.mark.realworld
def test_one_command_converts_quantizes_and_registers_with_lineage(
    trained: Trained, realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "tiny.tflite"
    code = main(
        [
            "models",
            "convert",
            str(trained.saved_model),
            "--out",
            str(out),
            "--quantize",
            "int8",
            "--calibration",
            str(realworld / CLIP),
            str(trained.scene),
            "--frames",
            "30",
            "--held-out",
            "12",
            "--min-agreement",
            "0.8",
            "--name",
            "tiny",
            "--version",
            "1",
            "--model-dir",
            str(cache),
        ]
    )
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "calibrating: frame 30/30" in err  # progress
    assert "agreement" in printed
    assert "registered tiny@1 (pending)" in printed
    entry = Registry(cache).get("tiny", "1")
    assert entry.sha256 == sha256_file(out)
    lineage = entry.lineage
    assert lineage["conversion"]["quantize"] == "int8"
    assert lineage["conversion"]["io_type"] == "uint8"
    assert lineage["source"]["path"] == str(trained.saved_model)
    assert len(lineage["source"]["sha256"]) == 64
    files = {f["path"]: f["sha256"] for f in lineage["calibration"]["files"]}
    assert files[str(realworld / CLIP)] == sha256_file(realworld / CLIP)
    assert lineage["calibration"]["frames"] + lineage["calibration"]["held_out"] == 42
    assert 0.8 <= lineage["agreement"]["agreement"] <= 1.0
    with open_detector(DetectorConfig(model="tiny@1", model_dir=cache)) as detector:
        assert detector.model.to_json()["version"] == "1"
        assert detector.format == "yolov5"


@pytest.mark.realworld
def test_below_the_agreement_bar_nothing_is_written_unless_forced(
    trained: Trained, realworld: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "strict.tflite"
    argv = ["models", "convert", str(trained.saved_model), "--out", str(out), "--quantize",
            "int8", "--calibration", str(realworld / CLIP), str(trained.scene), "--frames",
            "30", "--held-out", "12", "--min-agreement", "1.0",
            # scores down to 0.02 count: int8's score steps (1/255) then decide some boxes
            "--threshold", "0.02"]  # fmt: skip
    code = main(argv)
    printed, err = capsys.readouterr()
    assert "agreement 1.000" not in printed
    assert code == 2
    assert "is below --min-agreement 1.0: nothing written" in err
    assert not out.exists()
    assert main([*argv, "--force"]) == 0
    assert out.is_file()
    assert (tmp_path / "strict.tflite.yaml").is_file()


def _no_image_input(tmp_path: Path) -> Path:
    import keras  # noqa: PLC0415

    path = tmp_path / "tabular.keras"
    with warnings.catch_warnings():  # Keras' own deprecations
        warnings.simplefilter("ignore")
        inputs = keras.Input((10,), batch_size=1)
        keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    return path


def test_bad_inputs_get_clear_errors(trained: Trained, tmp_path: Path) -> None:
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    folder = tmp_path / "folder"
    folder.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 1000)
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((96, 96), 128, np.uint8))
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((4, 4, 3), 128, np.uint8))
    cases = [
        (text, (trained.scene,), "cannot load the Keras model"),
        (folder, (trained.scene,), "without saved_model.pb, so not a SavedModel"),
        (tmp_path / "README.md", (trained.scene,), "does not exist"),
        (_no_image_input(tmp_path), (trained.scene,), "which is not an image"),
        (trained.saved_model, (empty,), "is empty: give clips or images"),
        (trained.saved_model, (broken,), "cannot open"),
        (trained.saved_model, (grey,), "has 1 channel(s)"),
        (trained.saved_model, (tiny,), "are 4x4; the model takes 64x64"),
    ]
    for source, calibration, message in cases:
        out = tmp_path / "out.tflite"
        options = ConvertOptions(source=source, out=out, calibration=calibration, frames=4)
        with pytest.raises(EdgeAppError) as caught:
            convert_model(options, _quiet)
        assert message in str(caught.value), (source, calibration, str(caught.value))
        assert not out.exists()


@pytest.mark.slow  # a Python started without TensorFlow on its path
def test_without_tensorflow_the_command_says_what_to_install(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    # A real interpreter in which the tensorflow import fails, as on a machine without it.
    blocker = tmp_path / "tensorflow.py"
    blocker.write_text("raise ImportError('no tensorflow here')\n")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from edge_app.cli import main; "
         "sys.exit(main(['models', 'convert', 'x', '--out', 'y.tflite', '--calibration', 'z']))"],
        capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin"},
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "pip install 'edge-app[convert]'" in result.stderr
    assert "Traceback" not in result.stderr
