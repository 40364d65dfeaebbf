"""``cameras[].tracking``: validation, defaults, local only, and what a bad embedding model
says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_app.config import CameraConfig, TrackingConfig, parse_config, validate_overlay
from edge_app.errors import ConfigError, ModelNotFoundError
from edge_app.vision.appearance import ColourHistogram, open_appearance
from edge_app.vision.rules import RuleEngine
from tests.config.test_remote_overlay import MODELS, local_config
from tests.vision.test_rules import CTX, rule


def config(tracking: dict[str, Any]) -> dict[str, Any]:
    return {
        "device": {"thing_name": "cam-1", "data_dir": "/tmp/x"},
        "cameras": [{"name": "yard", "source": {"type": "usb"}, "tracking": tracking}],
        "rules": [{"name": "person", "labels": ["person"], "per_object": True}],
        "uplink": {"enabled": False},
    }


def test_defaults_need_no_model_and_are_documented() -> None:
    camera = CameraConfig.model_validate({"name": "yard", "source": {"type": "usb"}})
    assert camera.tracking == TrackingConfig()
    assert camera.tracking.reid == "histogram"
    assert isinstance(open_appearance(camera.tracking), ColourHistogram)
    for name, field in TrackingConfig.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    ("tracking", "field", "reason"),
    [
        ({"reid": "embedding"}, "cameras.0.tracking.embedding_model", "needs embedding_model"),
        ({"low_score": 1.5}, "cameras.0.tracking.low_score", "less than or equal to 1"),
        ({"max_lost_s": 0}, "cameras.0.tracking.max_lost_s", "greater than 0"),
        ({"reid_window_s": -1}, "cameras.0.tracking.reid_window_s", "greater than or equal"),
        ({"reid": "face"}, "cameras.0.tracking.reid", "'histogram' or 'embedding'"),
        ({"keep": True}, "cameras.0.tracking.keep", "not permitted"),
    ],
)
def test_bad_tracking_settings_name_the_field(
    tracking: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(tracking), "test.yaml")
    assert [e.path for e in info.value.errors] == [field]
    assert reason in str(info.value)


def test_tracking_cannot_be_set_remotely() -> None:
    """It holds a model path: remote config never changes file paths."""
    desired = {"cameras": {"yard": {"tracking": {"reid_window_s": 0}}}}
    with pytest.raises(ConfigError) as info:
        validate_overlay(desired, local_config(), MODELS)
    assert [e.path for e in info.value.errors] == ["cameras.yard.tracking"]


def test_a_missing_embedding_model_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "embedder.tflite"
    camera = CameraConfig.model_validate(
        {
            "name": "yard",
            "source": {"type": "usb"},
            "tracking": {"reid": "embedding", "embedding_model": str(missing)},
        }
    )
    with pytest.raises(ModelNotFoundError, match=f"model file {missing} does not exist"):
        RuleEngine(camera, [rule(per_object=True)], CTX)
    # A camera without per-object rules never loads it.
    RuleEngine(camera, [rule()], CTX)
