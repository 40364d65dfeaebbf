"""Image classifiers: one output of class scores for a whole image (or a crop of one).

A model is a classifier when it has one output whose shape is [1, N] (or [N], [1, 1, 1, N])
with N >= 2: the format is told from the shape, like the detectors' decoders. Quantized
outputs are dequantized; scores that are not already probabilities (any below 0 or above 1:
logits) go through a softmax. Labels come from a file, else from the model's metadata
(``choose_labels``); line i names class i, so ImageNet's ``background`` line 0 is class 0.
"""

from __future__ import annotations

__all__ = ["Classifier"]

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edge_app.domain import ModelRef
from edge_app.errors import ModelError, UnsupportedModelError
from edge_app.models import sha256_file
from edge_app.vision.labels import choose_labels
from edge_app.vision.preprocess import InputSpec, Preprocessor
from edge_app.vision.runtime import load_interpreter
from edge_app.vision.tensors import TensorInfo, dequantize, describe_tensors


class Classifier:
    """A loaded classifier. Not thread-safe (one interpreter, which needs no closing).

    Raises ``ModelNotFoundError``/``ModelError`` for a missing or unloadable file and
    ``UnsupportedModelError`` (naming the tensors) for a model that is not a classifier.
    """

    def __init__(self, path: Path, *, labels: Path | None = None, threads: int = 1) -> None:
        path = Path(path)
        interpreter, self.runtime_name = load_interpreter(path, threads)
        inputs = [TensorInfo.from_details(d) for d in interpreter.get_input_details()]
        outputs = [TensorInfo.from_details(d) for d in interpreter.get_output_details()]
        classes = _classes(outputs)
        if len(inputs) != 1 or classes is None:
            raise UnsupportedModelError(
                f"{path} is not an image classifier: one input image and one output of class "
                f"scores [1, N] are expected; it has\n{describe_tensors(outputs, inputs)}"
            )
        self.path = path
        self._interpreter = interpreter
        self._output = outputs[0]
        self.classes = classes
        self.labels, self.labels_source = choose_labels(path, labels)
        if labels is not None and len(self.labels) > classes:
            raise ModelError(
                f"label file {labels} names {len(self.labels)} classes, {path} scores {classes}; "
                "give the label file that belongs to the model"
            )
        self.model = ModelRef(path.stem, sha256_file(path)[:12])
        spec = InputSpec.from_details(interpreter.get_input_details()[0])
        # Classifiers are trained on stretched RGB images, -1..1 when the input is float.
        self._prepare = Preprocessor.for_interpreter(interpreter, spec)
        try:
            self.scores(np.zeros((spec.height, spec.width, 3), np.uint8))
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{path} loads but cannot run: {exc}") from exc

    def scores(self, image_bgr: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Probabilities of the N classes for ``image_bgr`` (BGR uint8, any size)."""
        self._prepare(image_bgr)
        self._interpreter.invoke()
        raw = dequantize(self._interpreter.get_tensor(self._output.index), self._output)
        values = raw.reshape(-1)
        if float(values.min()) < 0.0 or float(values.max()) > 1.0 + 1e-3:
            shifted = np.exp(values - values.max())
            values = shifted / shifted.sum()
        return np.asarray(values, np.float32)

    def top(self, image_bgr: NDArray[np.uint8], k: int) -> list[tuple[str, float]]:
        """The ``k`` best (label, probability) pairs, best first."""
        probs = self.scores(image_bgr)
        best = np.argsort(-probs, kind="stable")[:k]
        return [(self.labels.name(int(i)), float(probs[i])) for i in best]


def _classes(outputs: list[TensorInfo]) -> int | None:
    """N for one [1, N]-like output of N >= 2 scores, else None."""
    if len(outputs) != 1:
        return None
    dims = [d for d in outputs[0].shape if d != 1]
    if len(dims) != 1 or dims[0] < 2:
        return None
    return int(dims[0])
