"""A tiny YOLO-style Keras detector, trained in the test on frames of the scene generator.

Three strided convolutions take a 64 x 64 RGB 0..1 input (the yolov5 conventions: letterbox
centred, pad 114) to an 8 x 8 grid; a 1 x 1 convolution predicts per cell the box offset,
size, objectness and one class score, decoded in the graph (``GridDecode``) to the yolov5
layout [1, 64, 6]: cx, cy, w, h (normalised to the input), objectness, class. Trained for a
few seconds on the scene's exact ground truth, it finds the pasted photographs.
"""

from __future__ import annotations

__all__ = ["INPUT", "train_detector"]

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.vision import InputSpec, Preprocessor
from edge_app.vision.preprocess import default_options
from simulator.scene import SceneTruth

INPUT = 64
GRID = 8

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _frames(video: Path, truth: SceneTruth) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Inputs preprocessed as the daemon does for yolov5, and per-cell targets [64, 6]:
    cx, cy, w, h (input-normalised), objectness, positive mask."""
    import cv2  # noqa: PLC0415

    buffer = np.zeros((1, INPUT, INPUT, 3), np.float32)
    spec = InputSpec(0, "images", INPUT, INPUT, "float32", 0.0, 0)
    pre = Preprocessor(spec, lambda: buffer, options=default_options("yolov5"))
    xs: list[NDArray[np.float32]] = []
    ys: list[NDArray[np.float32]] = []
    capture = cv2.VideoCapture(str(video))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        box_map = pre(np.asarray(frame, np.uint8))
        target = np.zeros((GRID * GRID, 6), np.float32)
        for box in truth.boxes[index]:
            if box.visible < 0.6:
                continue
            x1, y1, x2, y2 = box.bbox
            # frame-normalised -> input-normalised: the inverse of the letterbox BoxMap
            mx1 = (x1 - box_map.offset_x) / box_map.scale_x
            my1 = (y1 - box_map.offset_y) / box_map.scale_y
            mx2 = (x2 - box_map.offset_x) / box_map.scale_x
            my2 = (y2 - box_map.offset_y) / box_map.scale_y
            cx, cy, w, h = (mx1 + mx2) / 2, (my1 + my2) / 2, mx2 - mx1, my2 - my1
            cell = min(GRID - 1, int(cy * GRID)) * GRID + min(GRID - 1, int(cx * GRID))
            target[cell] = [cx, cy, w, h, 1.0, 1.0]
        xs.append(buffer[0].copy())
        ys.append(target)
        index += 1
    capture.release()
    return np.stack(xs), np.stack(ys)


def _model() -> Any:
    import keras  # noqa: PLC0415

    @keras.saving.register_keras_serializable(package="edge_app_tests")
    class GridDecode(keras.layers.Layer):  # type: ignore[misc]
        """[B, G, G, 6] raw -> [B, G*G, 6] cx, cy, w, h, objectness, class (yolov5 rows)."""

        def call(self, raw: Any) -> Any:
            ops = keras.ops
            g = raw.shape[1]
            steps = ops.arange(g, dtype="float32")
            gx = ops.reshape(ops.tile(ops.reshape(steps, (1, g)), (g, 1)), (1, g, g, 1))
            gy = ops.reshape(ops.tile(ops.reshape(steps, (g, 1)), (1, g)), (1, g, g, 1))
            s = ops.sigmoid(raw)
            cx = (s[..., 0:1] + gx) / g
            cy = (s[..., 1:2] + gy) / g
            rest = s[..., 2:6]
            return ops.reshape(ops.concatenate([cx, cy, rest], axis=-1), (-1, g * g, 6))

    inputs = keras.Input((INPUT, INPUT, 3), batch_size=1, name="images")
    x = inputs
    for filters in (16, 32, 32):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    raw = keras.layers.Conv2D(6, 1)(x)
    return keras.Model(inputs, GridDecode(name="decode")(raw), name="tiny_yolo")


def _loss(y_true: Any, y_pred: Any) -> Any:
    import keras  # noqa: PLC0415

    ops = keras.ops
    mask = y_true[..., 5]
    obj = keras.losses.binary_crossentropy(y_true[..., 4:5], y_pred[..., 4:5])
    box = ops.sum(ops.square(y_true[..., 0:4] - y_pred[..., 0:4]), axis=-1)
    cls = mask * keras.losses.binary_crossentropy(y_true[..., 5:6], y_pred[..., 5:6])
    return ops.mean(obj + 20.0 * mask * box + cls)


def train_detector(video: Path, truth: SceneTruth, out_dir: Path, epochs: int = 60) -> Any:
    """Train on the scene; save ``tiny.keras`` and the SavedModel ``saved/`` in ``out_dir``.
    Returns the Keras model."""
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    xs, ys = _frames(video, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model()
        # trained with batch 1: the input is fixed at batch 1, as the appliance feeds it
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=_loss)
        model.fit(xs, ys, batch_size=1, epochs=epochs, verbose=0, shuffle=True)
        model.save(out_dir / "tiny.keras")
        model.export(str(out_dir / "saved"), verbose=False)
    return model
