"""Remote overlay validation, delta merging and the last-good store (edge_app.config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_app.config import (
    MAX_PAYLOAD_BYTES,
    AppConfig,
    LastGood,
    LastGoodStore,
    config_digest,
    effective_config,
    merge_delta,
    parse_config,
    parse_payload,
    validate_overlay,
)
from edge_app.errors import ConfigError

MODELS = ("ssd_mobilenet_v2_coco", "ssd_mobilenet_v1_coco")


def local_config(tmp: Path | None = None) -> AppConfig:
    return parse_config(
        {
            "device": {"thing_name": "cam-1", "data_dir": str(tmp or Path("/tmp/x"))},
            "cameras": [
                {
                    "name": "yard",
                    "source": {"type": "usb"},
                    "zones": [{"name": "gate", "polygon": [[0, 0], [1, 0], [1, 1]]}],
                }
            ],
            "rules": [{"name": "person", "labels": ["person"], "zone": "gate"}],
            "uplink": {
                "host": "broker.example",
                "port": 8883,
                "tls": {"ca": "/etc/ea/ca.pem", "cert": "/etc/ea/d.crt", "key": "/etc/ea/d.key"},
            },
        }
    )


def errors_of(desired: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        validate_overlay(desired, local_config(), MODELS)
    return {e.path: e.message for e in info.value.errors}


def test_valid_overlay_changes_only_what_it_names() -> None:
    base = local_config()
    desired = {
        "detector": {"score_threshold": 0.7, "model": "ssd_mobilenet_v1_coco"},
        "cameras": {
            "yard": {"fps": 4, "zones": [{"name": "dock", "polygon": [[0, 0.5], [1, 0.5], [1, 1]]}]}
        },
        "rules": [{"name": "car", "labels": ["car"], "zone": "dock", "review_band": [0.5, 0.6]}],
        "uplink": {"batch": {"max_events": 10}},
    }
    _, effective = validate_overlay(desired, base, MODELS)
    assert effective.detector.score_threshold == 0.7
    assert effective.detector.model == "ssd_mobilenet_v1_coco"
    assert effective.cameras[0].fps == 4
    assert [z.name for z in effective.cameras[0].zones] == ["dock"]
    assert [r.name for r in effective.rules] == ["car"]
    assert effective.uplink.batch.max_events == 10
    # untouched: broker, device, batch bytes
    assert effective.uplink.host == "broker.example"
    assert effective.uplink.batch.max_bytes == base.uplink.batch.max_bytes
    assert config_digest(effective) != config_digest(base)


@pytest.mark.parametrize(
    ("desired", "field", "reason"),
    [
        ({"uplink": {"host": "evil.example"}}, "uplink.host", "not remotely settable"),
        ({"uplink": {"tls": {"ca": "/x"}}}, "uplink.tls", "not remotely settable"),
        (
            {"uplink": {"insecure_plaintext": True}},
            "uplink.insecure_plaintext",
            "not remotely settable",
        ),
        ({"health": {"host": "0.0.0.0"}}, "health", "not remotely settable"),
        ({"device": {"thing_name": "other"}}, "device", "not remotely settable"),
        ({"detector": {"model_dir": "/tmp"}}, "detector.model_dir", "not remotely settable"),
        ({"outbox": {"path": "/etc/passwd"}}, "outbox", "not remotely settable"),
        ({"exec": "rm -rf /"}, "exec", "not remotely settable"),
        ({"detector": {"model": "/tmp/evil.tflite"}}, "detector.model", "not a manifest model"),
        ({"detector": {"score_threshold": 1.5}}, "detector.score_threshold", "less than or equal"),
        ({"cameras": {"yard": {"fps": 0}}}, "cameras.yard.fps", "greater than 0"),
        ({"cameras": {"nope": {"fps": 1}}}, "cameras.nope", "no camera named"),
        (
            {"cameras": {"yard": {"zones": [{"name": "z", "polygon": [[0, 0], [2, 0], [1, 1]]}]}}},
            "cameras.yard.zones.0.polygon.1.0",
            "less than or equal to 1",
        ),
        (
            {"rules": [{"name": "r", "labels": ["person"], "zone": "nowhere"}]},
            "rules.0.zone",
            "zone 'nowhere' not on ['yard']",
        ),
        (
            {"rules": [{"name": "r", "labels": ["person"], "review_band": [0.8, 0.2]}]},
            "rules.0.review_band",
            "review_band",
        ),
        ([1, 2], "", "must be a JSON object"),
    ],
)
def test_invalid_overlay_names_each_field(desired: Any, field: str, reason: str) -> None:
    errors = errors_of(desired)
    assert field in errors, errors
    assert reason in errors[field]


def test_every_invalid_field_is_reported_at_once() -> None:
    errors = errors_of({"uplink": {"host": "x", "port": 1}, "detector": {"score_threshold": -1}})
    assert set(errors) == {"uplink.host", "uplink.port", "detector.score_threshold"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "bytes; at most 8192"),
        (b"[" * 50 + b"]" * 50, "nests deeper"),
        (b"[" * 4000 + b"]" * 4000, "payload"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff\xfe", "not UTF-8: byte 0xff at offset 0"),
        (b"", "not valid JSON"),
    ],
)
def test_payload_limits(payload: bytes, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_payload(payload)
    assert reason in str(info.value)


def test_merge_delta_follows_shadow_semantics() -> None:
    base = {"detector": {"score_threshold": 0.5, "model": "a"}, "rules": [1, 2]}
    merged = merge_delta(base, {"detector": {"model": None, "score_threshold": 0.6}, "rules": [3]})
    assert merged == {"detector": {"score_threshold": 0.6}, "rules": [3]}
    assert base["detector"] == {"score_threshold": 0.5, "model": "a"}  # not mutated


def test_last_good_round_trip_and_effective_config(tmp_path: Path) -> None:
    local = local_config(tmp_path)
    store = LastGoodStore(tmp_path)
    assert effective_config(local, store, MODELS) == (local, None)
    desired = {"detector": {"score_threshold": 0.8}}
    _, applied = validate_overlay(desired, local, MODELS)
    store.save(LastGood(desired, 12, config_digest(applied)))
    assert not list(tmp_path.glob("*.tmp"))  # renamed into place
    config, last = effective_config(local, store, MODELS)
    assert last is not None
    assert last.version == 12
    assert config.version == 12
    assert config.detector.score_threshold == 0.8


def test_damaged_or_unfitting_last_good_falls_back_to_the_file(tmp_path: Path) -> None:
    local = local_config(tmp_path)
    store = LastGoodStore(tmp_path)
    store.path.write_text("{not json")
    assert effective_config(local, store, MODELS) == (local, None)
    store.path.write_text(
        json.dumps({"version": 3, "digest": "x", "desired": {"cameras": {"gone": {"fps": 1}}}})
    )
    assert effective_config(local, store, MODELS) == (local, None)
