"""The configuration read from an environment variable (``--config-env VAR``), as a Greengrass
component's recipe hands it over: ``{configuration:/config}`` interpolated as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.config import load_config_env
from edge_app.errors import ConfigError

DOC = {
    "device": {"thing_name": "gg-core-1-cam", "data_dir": "state"},
    "cameras": [{"name": "cam0", "source": {"type": "file", "path": "clip.mp4"}}],
    "uplink": {"enabled": False},
}


def test_a_json_document_is_read_and_relative_paths_are_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config_env("EA_CONFIG", {"EA_CONFIG": json.dumps(DOC)})
    assert config.device.thing_name == "gg-core-1-cam"
    assert config.device.data_dir == tmp_path / "state"  # the component's work folder
    source = config.cameras[0].source
    assert getattr(source, "path", None) == tmp_path / "clip.mp4"


def test_numbers_greengrass_turned_into_floats_are_accepted() -> None:
    # Greengrass keeps configuration as JSON without integers: 8883 may arrive as 8883.0
    doc = {**DOC, "version": 3.0, "uplink": {"enabled": False, "port": 8883.0}}
    config = load_config_env("EA_CONFIG", {"EA_CONFIG": json.dumps(doc)})
    assert (config.version, config.uplink.port) == (3, 8883)


def test_yaml_text_is_read_too() -> None:
    text = "device: {thing_name: cam-9}\ncameras: [{name: a, source: {type: file, path: a.mp4}}]\n"
    text += "uplink: {enabled: false}\n"
    assert load_config_env("EA_CONFIG", {"EA_CONFIG": text}).device.thing_name == "cam-9"


@pytest.mark.parametrize("environ", [{}, {"EA_CONFIG": ""}, {"EA_CONFIG": "  \n"}])
def test_an_unset_or_empty_variable_is_named_with_what_to_do(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_env("EA_CONFIG", environ)
    assert caught.value.source == "$EA_CONFIG"
    assert "is not set or empty" in str(caught.value)
    assert "--config" in str(caught.value)


def test_field_errors_name_the_variable_and_the_field() -> None:
    doc = {**DOC, "cameras": [{"name": "cam0", "source": {"type": "file"}}]}
    with pytest.raises(ConfigError) as caught:
        load_config_env("EA_CONFIG", {"EA_CONFIG": json.dumps(doc)})
    assert caught.value.source == "$EA_CONFIG"
    assert [e.path for e in caught.value.errors] == ["cameras.0.source.file.path"]


def test_the_uninterpolated_thing_name_placeholder_is_refused() -> None:
    # without the nucleus' interpolateComponentConfiguration, {iot:thingName} arrives as is
    doc = {**DOC, "device": {"thing_name": "{iot:thingName}-cam"}}
    with pytest.raises(ConfigError) as caught:
        load_config_env("EA_CONFIG", {"EA_CONFIG": json.dumps(doc)})
    assert [e.path for e in caught.value.errors] == ["device.thing_name"]


def test_undecodable_bytes_are_reported_not_raised() -> None:
    # the OS hands Python undecodable bytes as surrogate escapes
    text = os.fsdecode(b"device: {thing_name: \xff}\n")
    with pytest.raises(ConfigError) as caught:
        load_config_env("EA_CONFIG", {"EA_CONFIG": text})
    assert "not UTF-8 text" in str(caught.value)


def test_run_and_validate_take_the_config_from_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EA_CONFIG", json.dumps(DOC))
    assert main(["config", "validate", "--config-env", "EA_CONFIG"]) == 0
    assert capsys.readouterr().out.startswith("$EA_CONFIG: ok (device gg-core-1-cam")
    monkeypatch.setenv("EA_CONFIG", json.dumps({**DOC, "device": {}}))
    assert main(["run", "--config-env", "EA_CONFIG"]) == 1
    err = capsys.readouterr().err
    assert "$EA_CONFIG" in err
    assert "device.thing_name" in err
    assert not (tmp_path / "state").exists()  # refused before anything was opened


def test_a_file_and_a_variable_together_are_an_argument_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--config", "a.yaml", "--config-env", "EA_CONFIG"])
    assert caught.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
