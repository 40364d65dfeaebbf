"""Config schema and loader: valid documents load, every invalid field is named by its path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_app.cli import main
from edge_app.config import FileSourceConfig, load_config, parse_config
from edge_app.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "edge-app.example.yaml"


def minimal(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "device": {"thing_name": "cam-1"},
        "cameras": [{"name": "a", "source": {"type": "file", "path": "clip.mp4"}}],
        "uplink": {"enabled": False},
    }
    doc.update(overrides)
    return doc


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.device.thing_name == "cam-001"
    assert [c.name for c in config.cameras] == ["dock", "replay"]
    assert config.rules[0].zone == "loading-bay"
    assert config.topic_prefix == "edge-app/cam-001"


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "device: {thing_name: x, data_dir: state}\n"
        "cameras: [{name: a, source: {type: file, path: clips/a.mp4}}]\n"
        "uplink: {enabled: false}\n"
    )
    config = load_config(tmp_path / "c.yaml")
    source = config.cameras[0].source
    assert isinstance(source, FileSourceConfig)
    assert source.path == tmp_path / "clips" / "a.mp4"
    assert config.outbox_path == tmp_path / "state" / "outbox.db"


@pytest.mark.parametrize(
    ("doc", "path", "fragment"),
    [
        (minimal(bogus=1), "bogus", "Extra inputs"),
        (minimal(device={"thing_name": "has space"}), "device.thing_name", "pattern"),
        (minimal(cameras=[]), "cameras", "at least 1"),
        (
            minimal(cameras=[{"name": "a", "source": {"type": "tape"}}]),
            "cameras.0.source",
            "does not match",
        ),
        (minimal(detector={"score_threshold": 1.5}), "detector.score_threshold", "less than"),
        (minimal(uplink={"port": 0}), "uplink.port", "greater than"),
        (
            minimal(rules=[{"name": "r", "labels": ["person"], "zone": "nowhere"}]),
            "rules.0.zone",
            "zone 'nowhere' not on ['a']",
        ),
        (
            minimal(rules=[{"name": "r", "labels": ["person"], "camera": "b"}]),
            "rules.0.camera",
            "no camera named 'b'",
        ),
        (
            minimal(rules=[{"name": "r", "labels": ["person"], "review_band": [0.8, 0.2]}]),
            "rules.0.review_band",
            "review_band",
        ),
    ],
)
def test_invalid_fields_are_named(doc: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    matching = [e for e in info.value.errors if e.path == path and fragment in e.message]
    assert matching, f"no error at {path!r} containing {fragment!r}: {info.value.errors}"


def test_all_errors_reported_at_once() -> None:
    doc = minimal(bogus=1, detector={"threads": 0})
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert {e.path for e in info.value.errors} == {"bogus", "detector.threads"}


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("device:\n  thing_name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.yaml")


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(EXAMPLE)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: {thing_name: 'a b'}\ncameras: []\nextra: 1\n")
    assert main(["config", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "device.thing_name" in err
    assert "cameras" in err
    assert "extra" in err


def test_cli_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert "device" in schema["required"]


TLS = {"ca": "/etc/ea/ca.pem", "cert": "/etc/ea/dev.crt", "key": "/etc/ea/dev.key"}


def uplink_errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    return [e.message for e in info.value.errors if e.path == "uplink"]


@pytest.mark.parametrize(
    "uplink",
    [{"host": "broker.example", "port": 1883}, None],
    ids=["tls-omitted", "no-uplink-section"],
)
def test_mqtt_without_tls_is_refused_with_how_to_configure_it(
    uplink: dict[str, Any] | None,
) -> None:
    doc = minimal(uplink=uplink)
    if uplink is None:
        del doc["uplink"]
    (message,) = uplink_errors(doc)
    for hint in ("uplink.tls.ca", "uplink.tls.cert", "uplink.tls.key", "8883"):
        assert hint in message
    assert "uplink.insecure_plaintext: true" in message
    assert "uplink.enabled: false" in message


def test_plain_mqtt_is_accepted_only_when_asked_for() -> None:
    config = parse_config(minimal(uplink={"port": 1883, "insecure_plaintext": True}))
    assert config.uplink.tls is None
    assert config.uplink.insecure_plaintext
    assert parse_config(minimal(uplink={"tls": TLS})).uplink.tls is not None
    assert not parse_config(minimal(uplink={"enabled": False})).uplink.enabled


def test_tls_and_plaintext_together_are_refused() -> None:
    (message,) = uplink_errors(minimal(uplink={"tls": TLS, "insecure_plaintext": True}))
    assert "insecure_plaintext" in message
    assert "uplink.tls" in message


def test_cli_validate_shows_the_tls_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(
        "device: {thing_name: cam-1}\n"
        "cameras: [{name: a, source: {type: usb}}]\n"
        "uplink: {host: broker.example, port: 1883}\n"
    )
    assert main(["config", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "uplink: " in err
    assert "uplink.tls.ca" in err
    assert "insecure_plaintext" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.168.1.10", "edge-cam.local", "::"])
def test_a_health_endpoint_off_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(health={"host": host}))
    (error,) = info.value.errors
    assert error.path == "health"
    for hint in ("health.token_file", "health.token_env", "health.host: 127.0.0.1"):
        assert hint in error.message
    assert parse_config(minimal(health={"host": host, "token_env": "HEALTH_TOKEN"})).health.exposed


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "localhost", "::1"])
def test_a_loopback_health_endpoint_needs_no_token(host: str) -> None:
    assert not parse_config(minimal(health={"host": host})).health.exposed


def test_health_token_sources_are_exclusive_and_named_safely() -> None:
    both = {"token_file": "/etc/ea/health.token", "token_env": "HEALTH_TOKEN"}
    with pytest.raises(ConfigError, match="not both"):
        parse_config(minimal(health=both))
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(health={"token_env": "BAD NAME; rm -rf /"}))
    assert [e.path for e in info.value.errors] == ["health.token_env"]
