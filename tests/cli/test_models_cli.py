"""``edge-app detect`` and ``edge-app models ...`` end to end, through ``edge_app.cli.main``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_app.cli import main
from edge_app.errors import ModelError
from edge_app.models import load_manifest, pull

REPO = Path(__file__).resolve().parents[2]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- detect ----------------------------------------------------------------------------------


@pytest.mark.realworld
def test_detect_json_finds_grace_hopper(
    capsys: pytest.CaptureFixture[str], realworld: Path, v1_model: Path
) -> None:
    image = realworld / "images" / "grace_hopper.bmp"
    code, out, _ = _run(capsys, "detect", str(image), "--model", str(v1_model), "--json")
    assert code == 0
    doc = json.loads(out)  # exactly one JSON document on stdout
    assert doc["model"]["name"] == "ssd_mobilenet_v1_coco"  # known by its sha256
    assert doc["model"]["sha256"].startswith("df027205054d6fd9")
    assert doc["model"]["runtime"].startswith("ai-edge-litert")
    assert doc["model"]["path"] == str(v1_model)
    [result] = doc["results"]
    assert (result["source"], result["frame"]) == (str(image), 0)
    people = [d for d in result["detections"] if d["label"] == "person"]
    assert people
    assert max(d["score"] for d in people) >= 0.5
    for det in result["detections"]:
        assert len(det["bbox"]) == 4
        assert all(0.0 <= v <= 1.0 for v in det["bbox"])


@pytest.mark.realworld
def test_detect_every_nth_video_frame(
    capsys: pytest.CaptureFixture[str], realworld: Path, v1_model: Path
) -> None:
    clip = realworld / "videos" / "traffic_frames.mp4"  # 20 frames
    argv = ["detect", str(clip), "--model", str(v1_model), "--every", "8", "--json"]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    results: list[dict[str, Any]] = json.loads(out)["results"]
    assert [r["frame"] for r in results] == [0, 8, 16]
    assert sum(d["label"] == "car" for d in results[0]["detections"]) >= 2


@pytest.mark.realworld
def test_detect_prints_a_table(
    capsys: pytest.CaptureFixture[str], realworld: Path, v1_model: Path
) -> None:
    image = realworld / "images" / "grace_hopper.bmp"
    code, out, _ = _run(capsys, "detect", str(image), "--model", str(v1_model))
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert {"person", "tie"} <= {row[2] for row in rows}
    assert all(row[1] == "0" for row in rows)


@pytest.mark.realworld
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent.jpg", "no such file"),
        (lambda d: _write(d / "clip.mp4", b"not a video at all"), "cannot open video"),
        (lambda d: _write(d / "photo.jpg", b"not a jpeg"), "cannot read image"),
        (lambda d: d, "not a file"),
    ],
    ids=["missing", "bad-video", "bad-image", "directory"],
)
def test_detect_refuses_bad_inputs_with_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    v1_model: Path,
    make: Any,
    message: str,
) -> None:
    path: Path = make(tmp_path)
    code, out, err = _run(capsys, "detect", str(path), "--model", str(v1_model), "--json")
    assert code == 2
    assert out == ""  # no half JSON document
    assert message in err
    assert str(path) in err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.realworld
def test_detect_refuses_a_bad_model(
    capsys: pytest.CaptureFixture[str], realworld: Path, tmp_path: Path
) -> None:
    image = str(realworld / "images" / "grace_hopper.bmp")
    code, _, err = _run(capsys, "detect", image, "--model", str(realworld / "MANIFEST.md"))
    assert code == 2
    assert "MANIFEST.md is not a loadable TFLite model" in err
    code, _, err = _run(capsys, "detect", image, "--model", "no_such_model")
    assert code == 2
    assert "ssd_mobilenet_v2_coco" in err  # lists the names it knows
    code, _, err = _run(
        capsys, "detect", image, "--model", "ssd_mobilenet_v1_coco", "--model-dir", str(tmp_path)
    )
    assert code == 2
    assert "run: edge-app models pull ssd_mobilenet_v1_coco" in err


def test_detect_rejects_a_threshold_outside_0_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["detect", str(tmp_path / "x.jpg"), "--threshold", "1.5"])
    assert info.value.code == 2
    assert "must lie in 0..1" in capsys.readouterr().err


# --- models inspect / list -------------------------------------------------------------------


@pytest.mark.realworld
def test_models_inspect_json_reports_the_format(
    capsys: pytest.CaptureFixture[str], v1_model: Path
) -> None:
    code, out, _ = _run(capsys, "models", "inspect", str(v1_model), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["format"] == "ssd_postprocess"
    assert report["manifest_name"] == "ssd_mobilenet_v1_coco"
    assert len(report["outputs"]) == 4
    pre = report["preprocessing"]
    assert (pre["resize"], pre["channel_order"], pre["width"], pre["height"]) == (
        "stretch",
        "rgb",
        300,
        300,
    )
    assert pre["quantized_input"] is True


@pytest.mark.realworld
def test_models_inspect_human_output(capsys: pytest.CaptureFixture[str], v1_model: Path) -> None:
    code, out, _ = _run(capsys, "models", "inspect", str(v1_model))
    assert code == 0
    assert "format:   ssd_postprocess" in out
    assert "preprocessing: stretch, rgb, input 300x300 uint8" in out
    assert "TFLite_Detection_PostProcess:3" in out


def test_models_inspect_refuses_a_non_model_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bogus = tmp_path / "weights.tflite"
    bogus.write_bytes(b"\x00" * 64 + b"definitely not a flatbuffer")
    code, out, err = _run(capsys, "models", "inspect", str(bogus), "--json")
    assert code == 2
    assert out == ""
    assert f"{bogus} is not a loadable TFLite model" in err
    assert "not a valid Flatbuffer" in err  # the runtime's own reason
    code, _, err = _run(capsys, "models", "inspect", str(tmp_path / "absent.tflite"))
    assert code == 2
    assert "does not exist" in err


@pytest.mark.model
def test_models_list_shows_what_is_cached(
    capsys: pytest.CaptureFixture[str], default_model: Path
) -> None:
    code, out, _ = _run(
        capsys, "models", "list", "--model-dir", str(default_model.parent), "--json"
    )
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)["models"]}
    assert rows["ssd_mobilenet_v2_coco"]["cached"] == "yes"
    assert rows["ssd_mobilenet_v2_coco"]["default"] is True
    assert rows["ssd_mobilenet_v1_coco"]["cached"] == "no"
    code, out, _ = _run(capsys, "models", "list", "--model-dir", str(default_model.parent))
    assert code == 0
    assert "ssd_mobilenet_v2_coco *" in out
    assert "Apache-2.0" in out


# --- models pull -----------------------------------------------------------------------------


@pytest.mark.model
def test_models_pull_twice_is_idempotent_and_the_second_needs_no_network(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    spec = load_manifest().default_spec()
    code, out, err = _run(capsys, "models", "pull", "--model-dir", str(cache))
    if code != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs to pull {spec.name}: {err}")
        pytest.skip(f"cannot pull {spec.name} here: {err}")
    path = cache / spec.file
    assert f"{path} (pulled, sha256 verified)" in out
    before = path.stat()
    # Second run in a process with no route out: proxies on a closed port and no npm on PATH.
    closed = "http://127.0.0.1:9"
    no_tools = tmp_path / "empty-bin"
    no_tools.mkdir()
    env = {
        **os.environ,
        "PATH": str(no_tools),
        "http_proxy": closed,
        "https_proxy": closed,
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "no_proxy": "",
        "NO_PROXY": "",
        "npm_config_registry": f"{closed}/",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from edge_app.cli import main; sys.exit(main(sys.argv[1:]))",
            "models",
            "pull",
            spec.name,
            "--model-dir",
            str(cache),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{path} (already cached, sha256 verified)" in done.stdout
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in cache.iterdir()) == [spec.file]  # nothing partial left


def test_pulling_an_unknown_name_lists_the_known_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "models", "pull", "yolov8n", "--model-dir", str(tmp_path))
    assert code == 2
    assert "no model named 'yolov8n'" in err
    assert "ssd_mobilenet_v1_coco" in err


def test_a_failed_pull_exits_2_and_says_where_to_put_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """ssd_mobilenet_v1_coco has only URL sources; with no internet they fail and say so."""
    spec = load_manifest().get("ssd_mobilenet_v1_coco")
    try:
        pull(spec, tmp_path / "probe", timeout=5)
    except ModelError:
        pass
    else:
        pytest.skip("this machine can reach the internet; the failure path is not exercised")
    code, out, err = _run(capsys, "models", "pull", spec.name, "--model-dir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert "every source failed" in err
    assert f"place it at {tmp_path / spec.file}" in err
    assert list(tmp_path.glob("*.tflite")) == []
