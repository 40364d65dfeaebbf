"""``tracking.reid: embedding`` with real models from ../shared/realworld."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.errors import ModelError, UnsupportedModelError
from edge_app.vision.appearance import EmbeddingAppearance
from tests.vision.clips import frames

pytestmark = pytest.mark.realworld

EXTRACTOR = "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
PERSON = (0.49, 0.03, 0.69, 0.86)  # where the second visitor stands (frames 250..430)


def test_embeddings_tell_a_person_from_the_empty_table(realworld: Path) -> None:
    model = EmbeddingAppearance(realworld / "models" / EXTRACTOR)
    clip = realworld / "videos" / "one-by-one-person-detection.mp4"
    images = {i: image for i, image in frames(clip) if i in (0, 300, 400)}
    empty, person, later = (model.describe(images[i], PERSON) for i in (0, 300, 400))
    assert empty is not None
    assert person is not None
    assert later is not None
    assert person.shape == (1024,)
    assert np.linalg.norm(person) == pytest.approx(1.0, abs=1e-5)
    assert model.similarity(person, later) >= model.threshold  # the same man, 10 s apart
    assert model.similarity(person, empty) < model.threshold
    flat = np.full((100, 100, 3), 50, np.uint8)
    assert model.describe(flat, (0.0, 0.0, 1.0, 1.0)) is None


def test_models_that_are_no_embedding_extractor_are_refused(realworld: Path) -> None:
    detector = realworld / "models" / "ssd_mobilenet_v1_coco_quant.tflite"
    with pytest.raises(UnsupportedModelError, match=r"1 inputs and 4 outputs; tracking\.embedding"):
        EmbeddingAppearance(detector)
    with pytest.raises(ModelError, match=r"model_invoking_error\.tflite"):
        EmbeddingAppearance(realworld / "models" / "model_invoking_error.tflite")
