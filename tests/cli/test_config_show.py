"""``edge-app config show FILE [--effective] [--json]``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edge_app.cli import main
from edge_app.config import LastGood, LastGoodStore, config_digest, load_config, validate_overlay


def write_config(tmp: Path) -> Path:
    path = tmp / "edge.yaml"
    doc = {
        "device": {"thing_name": "cam-9", "data_dir": str(tmp / "data")},
        "cameras": [{"name": "yard", "source": {"type": "usb"}}],
        "detector": {"score_threshold": 0.5},
        "uplink": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_show_file_and_effective(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    local = load_config(path)
    desired = {"detector": {"score_threshold": 0.8}}
    _, applied = validate_overlay(desired, local, ["ssd_mobilenet_v2_coco"])
    LastGoodStore(local.device.data_dir).save(
        LastGood(desired, 9, config_digest(applied.model_copy(update={"version": 9})))
    )

    assert main(["config", "show", str(path), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert (plain["source"], plain["remote_version"]) == ("file", None)
    assert plain["config"]["detector"]["score_threshold"] == 0.5

    assert main(["config", "show", str(path), "--effective", "--json"]) == 0
    effective = json.loads(capsys.readouterr().out)
    assert (effective["source"], effective["remote_version"]) == ("last-good", 9)
    assert effective["config"]["detector"]["score_threshold"] == 0.8
    assert effective["config"]["version"] == 9
    assert effective["digest"] != plain["digest"]

    assert main(["config", "show", str(path), "--effective"]) == 0
    text = capsys.readouterr().out
    assert "# source: last-good" in text
    assert "remote version: v9" in text
    assert yaml.safe_load(text)["detector"]["score_threshold"] == 0.8


def test_show_bad_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("device: {}\n")
    assert main(["config", "show", str(path)]) == 1
    assert "device.thing_name" in capsys.readouterr().err
