"""The local model registry: versions, approval, lineage; NAME@VERSION in configs and remote
config (real files, real tiny TFLite models built in the test)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from edge_app.config import DetectorConfig
from edge_app.config.remote import validate_overlay
from edge_app.errors import ChecksumMismatchError, ConfigError, ModelError, ModelNotFoundError
from edge_app.models import (
    Conventions,
    ModelStatus,
    Registry,
    RemoteChoices,
    load_manifest,
    register_model,
    resolve_model,
)
from edge_app.vision import open_detector
from tests.config.test_remote_overlay import local_config
from tests.vision.tflite_builder import build_constant_model

ROWS = np.array([[[0.5, 0.5, 0.2, 0.2, 0.9, 0.9]] + [[0.5, 0.5, 0.1, 0.1, 0.0, 0.0]] * 7])


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return build_constant_model(tmp_path / "det.tflite", ROWS.astype(np.float32))


def test_add_copies_the_file_and_keeps_its_lineage(tmp_path: Path, model: Path) -> None:
    cache = tmp_path / "cache"
    lineage = {"source": {"path": "/src/saved", "sha256": "ab" * 32}, "agreement": {"f1": 1.0}}
    entry = register_model(
        cache, model, "forklifts", "1", conventions=Conventions(format="yolov5"), lineage=lineage
    )
    assert (entry.ref, entry.status) == ("forklifts@1", ModelStatus.PENDING)
    stored = Registry(cache).file_of(entry)
    assert stored.read_bytes() == model.read_bytes()
    model.write_bytes(b"changed afterwards")  # the registered copy is what runs
    resolved = resolve_model("forklifts@1", cache, load_manifest())
    assert (resolved.path, resolved.version, resolved.name) == (stored, "1", "forklifts")
    index = json.loads((cache / "registry.json").read_text())
    assert index["models"][0]["lineage"] == lineage
    for path in (cache / "registry.json", stored):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_events_name_the_registry_version(tmp_path: Path, model: Path) -> None:
    register_model(tmp_path, model, "forklifts", "2.1", conventions=Conventions(format="yolov5"))
    config = DetectorConfig(model="forklifts@2.1", model_dir=tmp_path)
    with open_detector(config) as detector:
        ref = detector.model
    assert ref.to_json() == {"name": "forklifts", "sha256": ref.sha256, "version": "2.1"}
    assert ref.sha256 == Registry(tmp_path).get("forklifts", "2.1").sha256[:12]


def test_versions_are_immutable(tmp_path: Path, model: Path) -> None:
    register_model(tmp_path, model, "m", "1")
    with pytest.raises(ModelError, match="already registered; versions never change"):
        register_model(tmp_path, model, "m", "1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a model at all", "is not a TensorFlow Lite model"),
        (b"", "is not a TensorFlow Lite model"),
    ],
)
def test_a_file_that_is_not_a_model_is_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        register_model(tmp_path / "cache", bad, "m", "1")
    with pytest.raises(ModelError, match="is a folder"):
        register_model(tmp_path / "cache", tmp_path, "m", "1")
    assert not (tmp_path / "cache" / "registry.json").exists()


def test_a_wrong_digest_registers_nothing(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ChecksumMismatchError, match="nothing registered"):
        register_model(tmp_path, model, "m", "1", sha256="0" * 64)
    assert Registry(tmp_path).entries() == ()


def test_bad_names_and_unknown_entries_say_what_to_do(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ModelError, match="model name 'a b'"):
        register_model(tmp_path, model, "a b", "1")
    register_model(tmp_path, model, "m", "1")
    with pytest.raises(ModelNotFoundError, match="versions of m: 1"):
        resolve_model("m@9", tmp_path, load_manifest())


def test_a_rejected_model_is_refused_everywhere(tmp_path: Path, model: Path) -> None:
    register_model(tmp_path, model, "m", "1", conventions=Conventions(format="yolov5"))
    Registry(tmp_path).set_status("m", "1", ModelStatus.REJECTED)
    with pytest.raises(ModelError, match="m@1 is rejected"):
        open_detector(DetectorConfig(model="m@1", model_dir=tmp_path))


def test_an_altered_registered_file_is_refused(tmp_path: Path, model: Path) -> None:
    entry = register_model(tmp_path, model, "m", "1")
    stored = Registry(tmp_path).file_of(entry)
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(ChecksumMismatchError, match="the registry expects"):
        resolve_model("m@1", tmp_path, load_manifest())


def test_a_damaged_index_is_an_error_not_an_empty_registry(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text("{not json")
    with pytest.raises(ModelError, match="is damaged"):
        Registry(tmp_path).entries()


def test_remote_config_may_choose_only_approved_entries(tmp_path: Path, model: Path) -> None:
    registry = Registry(tmp_path)
    register_model(tmp_path, model, "m", "1")
    register_model(tmp_path, model, "m", "2")
    choices = RemoteChoices(load_manifest().names, registry)
    base = local_config(tmp_path)
    with pytest.raises(ConfigError, match="nor an approved registry model"):
        validate_overlay({"detector": {"model": "m@1"}}, base, choices)
    registry.set_status("m", "1", ModelStatus.APPROVED)  # counts at once, no new choices
    _, effective = validate_overlay({"detector": {"model": "m@1"}}, base, choices)
    assert effective.detector.model == "m@1"
    assert "m@2" not in choices
    assert sorted(choices) == sorted([*load_manifest().names, "m@1"])
    registry.set_status("m", "1", ModelStatus.REJECTED)  # revoked
    with pytest.raises(ConfigError):
        validate_overlay({"detector": {"model": "m@1"}}, base, choices)
