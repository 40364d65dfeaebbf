"""Hostile or careless config input: each gets a clear ConfigError naming the field or line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from edge_app.cli import main
from edge_app.config import MAX_DEPTH, load_config, parse_config, parse_payload, validate_overlay
from edge_app.config import cameras as config_cameras
from edge_app.config import delivery as config_delivery
from edge_app.config import detection as config_detection
from edge_app.config import remote as config_remote
from edge_app.config import schema as config_schema
from edge_app.config.base import Model
from edge_app.config.loader import MAX_NESTING, error_path
from edge_app.errors import ConfigError
from tests.config.test_config import minimal
from tests.config.test_remote_overlay import MODELS, local_config

# The uplink is off: these documents are about the file, not about TLS (an enabled uplink
# without uplink.tls is refused).
GOOD = (
    "device: {thing_name: cam-1}\ncameras: [{name: a, source: {type: usb}}]\n"
    "uplink: {enabled: false}\n"
)


def errors_of(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    return {e.path: e.message for e in info.value.errors}


def file_error(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (error,) = info.value.errors
    return str(error)


# -- the file itself --------------------------------------------------------------------------


def test_non_utf8_bytes_name_the_line_and_column(tmp_path: Path) -> None:
    message = file_error(tmp_path, GOOD.encode() + b"log_level: inf\xffo\n")
    assert "not UTF-8" in message
    assert "byte 0xff at line 4, column 15" in message


def test_cli_reports_non_utf8_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("device: {thing_name: cam-1, site: Zürich}\n".encode("latin-1"))
    assert main(["config", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not UTF-8" in err
    assert "Traceback" not in err


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_config(path).device.thing_name == "cam-1"


@pytest.mark.parametrize("levels", [MAX_NESTING + 1, 1000, 100_000])
@pytest.mark.slow
def test_deep_flow_nesting_is_refused_before_recursion(tmp_path: Path, levels: int) -> None:
    message = file_error(tmp_path, (GOOD + "x: " + "[" * levels + "]" * levels).encode())
    assert f"nested deeper than {MAX_NESTING} levels" in message
    assert "line 4" in message


def test_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    block = "".join("  " * i + "k:\n" for i in range(1, 1500))
    message = file_error(tmp_path, (GOOD + "x:\n" + block).encode())
    assert "nested deeper" in message


def test_nesting_up_to_the_limit_is_parsed(tmp_path: Path) -> None:
    # Within the limit the document parses; the unknown key is then the (named) problem.
    levels = MAX_NESTING - 1  # the root mapping is a level too
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + "x: " + "[" * levels + "]" * levels + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [e.path for e in info.value.errors] == ["x"]


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        (GOOD + "device: {thing_name: other}\n", "device", 4, 1),
        ("device:\n  thing_name: a\n  thing_name: b\ncameras: []\n", "thing_name", 3, 2),
        (
            GOOD + "rules: [{name: r, labels: [p], min_score: 0.4, min_score: 0.9}]\n",
            "min_score",
            4,
            4,
        ),
    ],
)
def test_duplicate_keys_are_refused_naming_key_and_line(
    tmp_path: Path, text: str, key: str, line: int, first: int
) -> None:
    message = file_error(tmp_path, text.encode())
    assert f"duplicate key {key!r} (first given at line {first})" in message
    assert f"at line {line}," in message


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    # `<<` merges an anchor's keys; a key given beside it overrides the merged one by design.
    path = tmp_path / "c.yaml"
    path.write_text(
        "device: {thing_name: cam-1}\n"
        "base: &base {type: file, path: a.mp4, loop: true}\n"
        "cameras: [{name: a, source: {<<: *base, loop: false}}]\n"
        "uplink: {enabled: false}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [e.path for e in info.value.errors] == ["base"]  # not a duplicate-key error


def test_a_directory_given_as_the_config_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_unknown_home_directory_is_a_field_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + "outbox: {path: ~no-such-user-here/outbox.db}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [e.path for e in info.value.errors] == ["outbox.path"]


# -- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
@pytest.mark.parametrize(
    ("section", "field_path"),
    [
        ("cameras: [{name: a, source: {type: usb}, fps: V}]", "cameras.0.fps"),
        ("detector: {score_threshold: V}", "detector.score_threshold"),
        ("outbox: {max_age_days: V}", "outbox.max_age_days"),  # no upper bound: inf passed
        (
            "cameras: [{name: a, source: {type: usb}, zones: [{name: z, "
            "polygon: [[0, 0], [1, V], [1, 1]]}]}]",
            "cameras.0.zones.0.polygon.1.1",
        ),
        ("rules: [{name: r, labels: [p], review_band: [0.1, V]}]", "rules.0.review_band.1"),
    ],
)
def test_non_finite_floats_must_be_finite(
    tmp_path: Path, section: str, field_path: str, value: str
) -> None:
    text = "device: {thing_name: cam-1}\n"
    if not section.startswith("cameras"):
        text += "cameras: [{name: a, source: {type: usb}}]\n"
    path = tmp_path / "c.yaml"
    path.write_text(text + section.replace("V", value) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = {e.path: e.message for e in info.value.errors}
    assert errors[field_path].startswith("must be a finite number"), errors


def test_every_config_model_refuses_non_finite_floats() -> None:
    """Structural: every section of the tree and of the remote overlay derives from ``Model``,
    whose config refuses NaN/inf; a section built on BaseModel directly would not."""
    modules = (config_cameras, config_delivery, config_detection, config_remote, config_schema)
    models = {
        obj
        for module in modules
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj not in (BaseModel, Model)
    }
    assert len(models) > 20
    for model in models:
        assert issubclass(model, Model), model
        assert model.model_config.get("allow_inf_nan") is False, model


# -- names, topics, client id, NUL ------------------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", "...", "a/b", "a\\b", "", "x" * 65, "a b"])
def test_camera_zone_and_rule_names_cannot_be_paths(name: str) -> None:
    camera = {"name": name, "source": {"type": "usb"}}
    assert "cameras.0.name" in errors_of(minimal(cameras=[camera]))
    zone = {"name": name, "polygon": [[0, 0], [1, 0], [1, 1]]}
    cam = {"name": "a", "source": {"type": "usb"}, "zones": [zone]}
    assert "cameras.0.zones.0.name" in errors_of(minimal(cameras=[cam]))
    rule = {"name": name, "labels": ["person"]}
    assert "rules.0.name" in errors_of(minimal(rules=[rule]))


def test_dots_message_says_why() -> None:
    errors = errors_of(minimal(cameras=[{"name": "..", "source": {"type": "usb"}}]))
    assert "must not be '..'" in errors["cameras.0.name"]
    assert "folder" in errors["cameras.0.name"]


@pytest.mark.parametrize("name", ["dock", "dock.2", "a-b_c", ".hidden-ok", "x" * 64])
def test_ordinary_names_pass(name: str) -> None:
    config = parse_config(minimal(cameras=[{"name": name, "source": {"type": "usb"}}]))
    assert config.cameras[0].name == name


@pytest.mark.parametrize(
    ("prefix", "fragment"),
    [
        ("edge-app/+/{thing}", "wildcard"),
        ("edge-app/#", "wildcard"),
        ("edge-app/\0/{thing}", "control characters"),
        ("/edge-app/{thing}", "empty level"),
        ("edge-app//{thing}", "empty level"),
        ("edge-app/{thing}/", "empty level"),
        ("", "empty level"),
        ("$aws/things/{thing}", "belong to the broker"),
        ("edge-app/{device}", "only placeholder"),
        ("a/b/c/d/e/f/{thing}", "levels; at most 6"),
    ],
)
def test_topic_prefix_must_make_valid_topics(prefix: str, fragment: str) -> None:
    errors = errors_of(minimal(uplink={"topic_prefix": prefix, "enabled": False}))
    assert fragment in errors["uplink.topic_prefix"], errors


def test_topic_prefix_length_is_checked_with_the_thing_name() -> None:
    long_prefix = "p" * 150 + "/{thing}"
    short = parse_config(minimal(uplink={"topic_prefix": long_prefix, "enabled": False}))
    assert short.topic_prefix == "p" * 150 + "/cam-1"
    doc = minimal(uplink={"topic_prefix": long_prefix, "enabled": False})
    doc["device"] = {"thing_name": "t" * 128}
    assert "AWS IoT Core allows 256" in errors_of(doc)["uplink.topic_prefix"]


@pytest.mark.parametrize("prefix", ["edge-app/{thing}", "fleet/site-1/{thing}", "a/b/c/d/e/f"])
def test_sensible_prefixes_pass(prefix: str) -> None:
    assert parse_config(minimal(uplink={"topic_prefix": prefix, "enabled": False}))


@pytest.mark.parametrize(
    ("client_id", "fragment"),
    [("cam+1", "wildcard"), ("cam#", "wildcard"), ("cam\0", "control"), ("", "at least 1")],
)
def test_client_id_must_be_a_plain_mqtt_string(client_id: str, fragment: str) -> None:
    errors = errors_of(minimal(uplink={"client_id": client_id, "enabled": False}))
    assert fragment in errors["uplink.client_id"], errors


@pytest.mark.parametrize(
    ("doc", "field_path"),
    [
        (minimal(device={"thing_name": "c", "data_dir": "/var/lib/a\0b"}), "device.data_dir"),
        (minimal(device={"thing_name": "c", "site": "dock\0"}), "device.site"),
        (minimal(rules=[{"name": "r", "labels": ["per\0son"]}]), "rules.0.labels"),
    ],
)
def test_nul_is_refused_in_every_string_and_path(doc: dict[str, Any], field_path: str) -> None:
    assert "NUL" in errors_of(doc)[field_path]


# -- whole-model checks name the field they are about -----------------------------------------


def test_repeated_names_point_at_the_repeat() -> None:
    cams = [{"name": "a", "source": {"type": "usb"}}, {"name": "a", "source": {"type": "usb"}}]
    assert "'a' repeats" in errors_of(minimal(cameras=cams))["cameras.1.name"]
    rules = [{"name": "r", "labels": ["p"]}, {"name": "s", "labels": ["p"]}]
    rules.append({"name": "r", "labels": ["q"]})
    assert "cameras.1.name" not in errors_of(minimal(rules=rules))
    assert "rules.2.name" in errors_of(minimal(rules=rules))


def test_rule_kind_conflicts_name_the_field() -> None:
    line = {"name": "r", "labels": ["p"], "line": [[0, 0.5], [1, 0.5]]}
    assert "per_object" in errors_of(minimal(rules=[line]))["rules.0.line"]
    dwell = {"name": "r", "labels": ["p"], "dwell_s": 3}
    assert "rules.0.dwell_s" in errors_of(minimal(rules=[dwell]))


# -- remote payloads --------------------------------------------------------------------------


def test_duplicate_keys_in_a_payload_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'score_threshold'"):
        parse_payload(b'{"detector": {"score_threshold": 0.2, "score_threshold": 0.9}}')


@pytest.mark.parametrize("levels", [MAX_DEPTH + 4, 4000])
def test_payload_depth_is_counted_before_parsing(levels: int) -> None:
    with pytest.raises(ConfigError, match="nests deeper than"):
        parse_payload(b"[" * levels + b"]" * levels)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = json.dumps({"a": '[[[[[[[[[[[[[[[[[[[[ \\" {{{{{{{{{{{{{{{{{{'})
    assert parse_payload(text.encode()) == json.loads(text)


def test_remote_floats_must_be_finite() -> None:
    desired = parse_payload(b'{"detector": {"score_threshold": 1e999}}')  # json: inf
    with pytest.raises(ConfigError) as info:
        validate_overlay(desired, local_config(), MODELS)
    assert [(e.path, e.message) for e in info.value.errors] == [
        ("detector.score_threshold", "must be a finite number, not inf")
    ]


def test_remote_zone_names_cannot_be_paths() -> None:
    zones = [{"name": "..", "polygon": [[0, 0], [1, 0], [1, 1]]}]
    with pytest.raises(ConfigError) as info:
        validate_overlay({"cameras": {"yard": {"zones": zones}}}, local_config(), MODELS)
    assert [e.path for e in info.value.errors] == ["cameras.yard.zones.0.name"]


def test_the_yaml_dump_of_a_loaded_config_loads_again(tmp_path: Path) -> None:
    # The strict loader accepts what `config show` prints (no false duplicate-key alarms).
    config = load_config(Path(__file__).resolve().parents[2] / "deploy" / "edge-app.example.yaml")
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    assert load_config(path).model_dump(mode="json") == config.model_dump(mode="json")


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("cameras", 0, "zones", 1, "name"), "cameras.0.zones.1.name"),
        (("cameras", "..", "fps"), 'cameras[".."].fps'),
        (("cameras", "a.b"), 'cameras["a.b"]'),
        (("x", ""), 'x[""]'),
        (("[0]",), '["[0]"]'),
    ],
)
def test_error_paths_stay_unambiguous(loc: tuple[str | int, ...], path: str) -> None:
    # Found by the property test: a remote camera named ".." gave the path "cameras...".
    assert error_path(loc) == path


def test_a_remote_camera_named_dots_is_named_unambiguously() -> None:
    with pytest.raises(ConfigError) as info:
        validate_overlay({"cameras": {"..": {"fps": 1}}}, local_config(), MODELS)
    assert [e.path for e in info.value.errors] == ['cameras[".."]']
