"""A model that loads but needs a custom op the runtime lacks (the Coral test data's
model_invoking_error.tflite, op ``fake-op-double``): one clear error naming the op, from each
command a user would run, as a real subprocess, and never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_app.errors import ModelError
from edge_app.vision.runtime import runtime_error

EDGE_APP = [sys.executable, "-m", "edge_app"]
OP = "'fake-op-double'"


def _broken(realworld: Path) -> Path:
    return realworld / "models" / "model_invoking_error.tflite"


def _assert_clear(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, done.stderr
    assert f"needs the custom op {OP}" in done.stderr
    assert "re-export the model with TensorFlow Lite builtin ops only" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "complete .tflite flatbuffer" not in done.stderr  # the old, wrong advice


@pytest.mark.realworld
def test_detect_names_the_missing_op(realworld: Path) -> None:
    image = realworld / "images" / "grace_hopper.bmp"
    argv = ["detect", str(image), "--model", str(_broken(realworld))]
    done = subprocess.run([*EDGE_APP, *argv], capture_output=True, text=True, timeout=120)
    _assert_clear(done)
    assert done.stderr.count(OP) == 2  # one error line: the op and the hint, not a dump


@pytest.mark.realworld
def test_models_inspect_names_the_missing_op(realworld: Path) -> None:
    argv = ["models", "inspect", str(_broken(realworld)), "--json"]
    done = subprocess.run([*EDGE_APP, *argv], capture_output=True, text=True, timeout=120)
    _assert_clear(done)
    assert done.stdout == ""  # no half a JSON document


@pytest.mark.realworld
def test_run_names_the_missing_op(realworld: Path, tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    clip = realworld / "videos" / "traffic_frames.mp4"
    doc = {
        "device": {"thing_name": "cam-1", "data_dir": str(tmp_path / "data")},
        "cameras": [{"name": "a", "source": {"type": "file", "path": str(clip)}}],
        "detector": {"model": str(_broken(realworld))},
        "uplink": {"enabled": False},
        "health": {"enabled": False},
    }
    config.write_text(yaml.safe_dump(doc))
    argv = ["run", "--config", str(config)]
    done = subprocess.run([*EDGE_APP, *argv], capture_output=True, text=True, timeout=120)
    _assert_clear(done)
    assert f"edge-app: {_broken(realworld)} needs the custom op {OP}" in done.stderr


@pytest.mark.parametrize(
    ("said", "fragments"),
    [
        (
            "Encountered unresolved custom op: fake-op-double.\nSee instructions: "
            "https://www.tensorflow.org/lite/guide/ops_custom Node number 0 (fake-op-double) "
            "failed to prepare.",
            ["needs the custom op 'fake-op-double'", "builtin ops only"],
        ),
        (
            "Encountered unresolved custom op: edgetpu-custom-op.\nNode number 1 failed",
            ["needs the custom op 'edgetpu-custom-op'", "set delegate: edgetpu"],
        ),
        (
            "Encountered unresolved custom op: TFLite_Detection_PostProcess_v9",
            ["needs the custom op 'TFLite_Detection_PostProcess_v9'"],
        ),
        (
            "Model provided has model identifier 'abcd', should be 'TFL3'\n",
            ["m.tflite broke (rt 1.0 says: Model provided has model identifier", "; do this"],
        ),
    ],
)
def test_runtime_errors_become_one_line_naming_the_op(said: str, fragments: list[str]) -> None:
    error = runtime_error(Path("m.tflite"), "rt 1.0", RuntimeError(said), "broke", "do this")
    assert isinstance(error, ModelError)
    assert "\n" not in str(error)
    for fragment in fragments:
        assert fragment in str(error)


@pytest.mark.slow
def test_inspect_of_a_directory_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [*EDGE_APP, "models", "inspect", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert f"{tmp_path} is a directory; give the path of a .tflite file" in done.stderr
