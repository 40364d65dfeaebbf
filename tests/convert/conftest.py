"""One tiny Keras detector per session, trained on a generated scene (tests/convert)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulator.scene import SceneTruth, generate_scene


@dataclass(frozen=True)
class Trained:
    """The trained model saved both ways, and the scene it learned from."""

    keras_file: Path
    saved_model: Path
    scene: Path
    truth: SceneTruth


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed: pip install 'edge-app[convert]'")
    from tests.convert.keras_detector import train_detector  # noqa: PLC0415  # TensorFlow

    folder = tmp_path_factory.mktemp("trained")
    scene, truth_file = folder / "scene.mp4", folder / "scene.json"
    truth = generate_scene(scene, truth_file, seconds=12, fps=10, size=(320, 192), seed=3)
    train_detector(scene, truth, folder, epochs=15)
    return Trained(folder / "tiny.keras", folder / "saved", scene, truth)
