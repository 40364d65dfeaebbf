"""``edge-app models add | list | approve | reject`` and ``detect --format/--config``, end to
end through ``edge_app.cli.main`` on tiny real TFLite models built in the test."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import yaml

from edge_app.cli import main
from edge_app.models import Registry
from tests.vision.test_conventions import _frame_with_patch, _yolox


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_approve_reject(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = _yolox(tmp_path)
    source = tmp_path / "saved"
    source.mkdir()
    (source / "saved_model.pb").write_bytes(b"graph")
    cache = str(tmp_path / "cache")
    code, out, err = _run(
        capsys, "models", "add", str(model), "--name", "yx", "--version", "1",
        "--format", "yolox", "--source", str(source), "--model-dir", cache,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "registered yx@1 (pending, format yolox" in out
    assert "edge-app models approve yx 1" in out
    code, out, _ = _run(capsys, "models", "list", "--model-dir", cache, "--json")
    [entry] = json.loads(out)["registry"]
    assert (entry["name"], entry["version"], entry["status"]) == ("yx", "1", "pending")
    unset = ("labels", "resize", "pad_value", "letterbox_align", "channel_order", "input_range")
    assert entry["conventions"] == {"format": "yolox", **dict.fromkeys(unset)}
    assert len(entry["lineage"]["source"]["sha256"]) == 64
    assert _run(capsys, "models", "approve", "yx", "1", "--model-dir", cache)[1] == (
        "yx@1: approved\n"
    )
    code, out, _ = _run(capsys, "models", "list", "--model-dir", cache)
    assert "yx " in out
    assert "approved" in out
    assert _run(capsys, "models", "reject", "yx", "1", "--model-dir", cache)[0] == 0
    assert Registry(Path(cache)).get("yx", "1").status == "rejected"


def test_add_refuses_what_is_not_a_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "notes.tflite"
    bad.write_text("hello")
    code, _, err = _run(capsys, "models", "add", str(bad), "--name", "m", "--version", "1",
                        "--model-dir", str(tmp_path / "c"))  # fmt: skip
    assert code == 2
    assert err.startswith("edge-app models: error: ")
    assert "Traceback" not in err
    code, _, err = _run(capsys, "models", "add", str(tmp_path / "nope.tflite"), "--name", "m",
                        "--version", "1", "--model-dir", str(tmp_path / "c"))  # fmt: skip
    assert (code, "is not a file" in err) == (2, True)
    code, _, err = _run(capsys, "models", "approve", "m", "3", "--model-dir", str(tmp_path))
    assert code == 2
    assert "is not in the registry" in err


def test_detect_takes_the_format_or_a_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = _yolox(tmp_path)
    image = tmp_path / "patch.png"
    cv2.imwrite(str(image), _frame_with_patch((255, 0, 0), "top_left"))

    def found(*extra: str) -> int:
        code, out, err = _run(capsys, "detect", str(image), "--model", str(model), "--json",
                              *extra)  # fmt: skip
        assert code == 0, err
        return len(json.loads(out)["results"][0]["detections"])

    assert found("--format", "yolox") == 1
    assert found("--format", "yolov5") == 0  # the yolov5 conventions do not fit this model
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"thing_name": "cam-1", "data_dir": str(tmp_path / "data")},
                "uplink": {"enabled": False},
                "cameras": [{"name": "c", "source": {"type": "file", "path": str(image)}}],
                "detector": {"model": str(model), "format": "yolox"},
            }
        )
    )
    code, out, err = _run(capsys, "detect", str(image), "--config", str(config), "--json")
    assert code == 0, err
    assert len(json.loads(out)["results"][0]["detections"]) == 1
