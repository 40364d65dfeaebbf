"""Anomaly scoring learned from normal footage only: a memory bank of normal patch features.

PatchCore's idea at edge size: every frame (or zone crop) becomes a grid of patch features
(``FeatureExtractor``), projected to ``dims`` dimensions by a fixed random matrix
(Johnson-Lindenstrauss: distances are kept, the search is 4-8x cheaper). Fitting keeps a
coreset of the normal patches; scoring gives each patch its distance to the nearest normal
one. The frame's raw score is the largest patch distance, the anomaly map is the grid of
distances, and the threshold was calibrated on held-out normal frames (``anomaly_fit``).

Scores given to the rules are ``1 - 0.5 ** (raw / threshold)``: 0.5 at the calibrated
threshold, 0.75 at twice it, so a rule's ``min_score`` of 0.5 means "above the threshold".

The model file (``.npz``, no pickles) holds the bank, the projection and ``meta``: a JSON
document with ``kind`` (``edge-app/anomaly/1``), the extractor's file name, sha256 and layer,
the crop, the threshold and the lineage (sources, frame counts, calibration figures).
"""

from __future__ import annotations

__all__ = [
    "KIND",
    "AnomalyModel",
    "AnomalyResult",
    "AnomalyScorer",
    "heat_overlay",
    "nearest",
    "normalise_exposure",
    "score01",
]

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.domain import ModelRef
from edge_app.errors import ModelError, ModelNotFoundError
from edge_app.files import write_atomic
from edge_app.models import sha256_file
from edge_app.vision.features import FeatureExtractor

KIND = "edge-app/anomaly/1"
"""``meta.kind`` of an anomaly model file; anything else is refused."""

Region = tuple[float, float, float, float]
"""x1, y1, x2, y2 normalised 0..1 of the frame."""


def score01(raw: float, threshold: float) -> float:
    """The rules' 0..1 score of a raw distance: 0.5 at ``threshold``, towards 1 above."""
    return float(1.0 - 0.5 ** (max(raw, 0.0) / threshold))


@dataclass(frozen=True, slots=True)
class AnomalyModel:
    """A fitted model: ``bank`` (N, dims) normal patch features, ``projection`` (channels,
    dims), ``threshold`` (raw distance), ``meta`` (lineage; see the module docstring)."""

    bank: NDArray[np.float32]
    projection: NDArray[np.float32]
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.bank.ndim != 2 or self.projection.ndim != 2:
            raise ValueError("bank and projection must be 2-D")
        if self.bank.shape[1] != self.projection.shape[1] or not len(self.bank):
            raise ValueError("bank rows must have the projection's dimensions, and exist")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")

    @property
    def ref(self) -> ModelRef:
        """Lineage for events: the file's stem and the first 12 hex digits of its sha256."""
        return ModelRef(
            str(self.meta.get("name", "anomaly")), str(self.meta.get("sha256", ""))[:12]
        )

    @property
    def region(self) -> Region | None:
        """The part of the frame the model was fitted on (None: the whole frame)."""
        crop = self.meta.get("crop")
        return (
            None
            if crop is None
            else (float(crop[0]), float(crop[1]), float(crop[2]), float(crop[3]))
        )

    def save(self, path: Path) -> None:
        """Write the model to ``path`` (0600, atomically); ``ModelError`` if it cannot be."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            bank=self.bank,
            projection=self.projection,
            meta=np.frombuffer(
                json.dumps(self.meta | {"threshold": self.threshold}).encode(), np.uint8
            ),
        )
        try:
            write_atomic(path, buffer.getvalue())
        except OSError as exc:
            raise ModelError(f"cannot write the anomaly model to {path}: {exc.strerror}") from exc

    @classmethod
    def load(cls, path: Path) -> AnomalyModel:
        """Read a model written by ``save``; ``ModelNotFoundError`` if missing, ``ModelError``
        if the file is not an edge-app anomaly model (saying what to do)."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(
                f"anomaly model {path} does not exist; fit one with `edge-app anomaly fit`"
            )
        not_ours = (
            f"{path} is not an edge-app anomaly model; give the file written by "
            "`edge-app anomaly fit --out FILE`"
        )
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                bank = np.asarray(data["bank"], np.float32)
                projection = np.asarray(data["projection"], np.float32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise ModelError(not_ours) from exc
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            raise ModelError(not_ours)
        try:
            model = cls(bank, projection, float(meta["threshold"]), meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path} is a damaged anomaly model ({exc}); fit it again") from exc
        meta["sha256"] = sha256_file(path)
        meta.setdefault("name", path.stem)
        return model


@dataclass(frozen=True, slots=True)
class AnomalyResult:
    """One inspected frame: ``raw`` (largest patch distance), ``score`` (0..1, 0.5 at the
    threshold), ``map`` (rows, cols) raw distances over the inspected region, ``box`` (the most
    anomalous region, normalised to the frame) and ``share`` (of patches at or above half the
    threshold: a defect raises a few, a changed view most of them)."""

    raw: float
    score: float
    map: NDArray[np.float32]
    box: Region
    share: float


def nearest(
    patches: NDArray[np.float32], bank: NDArray[np.float32], bank_sq: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Euclidean distance of each row of ``patches`` to its nearest row of ``bank``
    (``bank_sq``: the bank's squared row norms, computed once)."""
    sq = (patches * patches).sum(axis=1)[:, None] + bank_sq[None, :]
    sq -= 2.0 * (patches @ bank.T)
    return np.asarray(np.sqrt(np.maximum(sq.min(axis=1), 0.0)), np.float32)


_GREY_TARGET = 128.0
"""Mean grey level every inspected crop is scaled to before its features are taken."""


def normalise_exposure(crop: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """``crop`` with its mean brightness scaled to one level (gain 0.4..2.5): a light turned
    down or up, or the camera's auto-exposure, is then no anomaly; a defect is local and
    moves the mean little."""
    mean = float(crop.mean())
    gain = min(max(_GREY_TARGET / max(mean, 1.0), 0.4), 2.5)
    return np.asarray(cv2.convertScaleAbs(crop, alpha=gain), np.uint8)


def _crop(image: NDArray[np.uint8], region: Region | None) -> tuple[NDArray[np.uint8], Region]:
    if region is None:
        return image, (0.0, 0.0, 1.0, 1.0)
    h, w = image.shape[:2]
    x1, y1 = round(region[0] * w), round(region[1] * h)
    x2, y2 = max(round(region[2] * w), x1 + 1), max(round(region[3] * h), y1 + 1)
    return image[y1:y2, x1:x2], (x1 / w, y1 / h, x2 / w, y2 / h)


class AnomalyScorer:
    """An extractor and a fitted model: ``score(image)`` per inspected frame. Not thread-safe.

    ``extractor`` must be the backbone the model was fitted with (same file digest and
    layer); ``ModelError`` otherwise.
    """

    def __init__(self, model: AnomalyModel, extractor: FeatureExtractor) -> None:
        want = model.meta.get("extractor", {})
        digest = sha256_file(extractor.path)
        if want.get("sha256") not in (None, digest):
            raise ModelError(
                f"the anomaly model was fitted with extractor sha256 {want['sha256'][:12]}, but "
                f"{extractor.path} has {digest[:12]}; give the extractor it was fitted with"
            )
        if extractor.layer.channels != model.projection.shape[0]:
            raise ModelError(
                f"{extractor.path} gives {extractor.layer.channels} channels, the anomaly model "
                f"expects {model.projection.shape[0]}; give the extractor it was fitted with"
            )
        self.model = model
        self.extractor = extractor
        self._bank_sq = (model.bank * model.bank).sum(axis=1)

    def patches(self, image_bgr: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Projected patch features of the model's region of ``image_bgr``: (rows*cols, dims)."""
        crop, _ = _crop(image_bgr, self.model.region)
        grid = self.extractor.extract(normalise_exposure(crop))
        return np.asarray(grid.reshape(-1, grid.shape[2]) @ self.model.projection, np.float32)

    def distances(self, patches: NDArray[np.float32]) -> NDArray[np.float32]:
        """Distance of each patch to its nearest normal patch."""
        return nearest(patches, self.model.bank, self._bank_sq)

    def score(self, image_bgr: NDArray[np.uint8]) -> AnomalyResult:
        """Score one frame (BGR uint8, any size)."""
        layer = self.extractor.layer
        dist = self.distances(self.patches(image_bgr)).reshape(layer.rows, layer.cols)
        _, region = _crop(image_bgr, self.model.region)
        threshold = self.model.threshold
        raw = float(dist.max())
        return AnomalyResult(
            raw=raw,
            score=score01(raw, threshold),
            map=dist,
            box=_peak_box(dist, threshold, region),
            share=float((dist >= 0.5 * threshold).mean()),
        )


def _peak_box(dist: NDArray[np.float32], threshold: float, region: Region) -> Region:
    """The box, normalised to the frame, of the connected cells around the peak that reach
    half the peak (and at least the threshold, when the peak does)."""
    rows, cols = dist.shape
    peak = float(dist.max())
    level = max(0.5 * peak, threshold) if peak >= threshold else 0.5 * peak
    mask = (dist >= level).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    pr, pc = np.unravel_index(int(dist.argmax()), dist.shape)
    ys, xs = np.nonzero(labels == labels[pr, pc])
    rx1, ry1, rx2, ry2 = region
    cw, ch = (rx2 - rx1) / cols, (ry2 - ry1) / rows
    return (
        rx1 + float(xs.min()) * cw,
        ry1 + float(ys.min()) * ch,
        rx1 + float(xs.max() + 1) * cw,
        ry1 + float(ys.max() + 1) * ch,
    )


def heat_overlay(
    image_bgr: NDArray[np.uint8], result: AnomalyResult, threshold: float, region: Region | None
) -> NDArray[np.uint8]:
    """A copy of ``image_bgr`` with the anomaly map blended over the inspected region (blue:
    normal, red: twice the threshold and above)."""
    out = image_bgr.copy()
    crop, _ = _crop(out, region)
    h, w = crop.shape[:2]
    level = np.clip(result.map / (2.0 * threshold) * 255.0, 0, 255).astype(np.uint8)
    heat = cv2.applyColorMap(
        cv2.resize(level, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLORMAP_JET
    )
    crop[...] = cv2.addWeighted(crop, 0.6, heat, 0.4, 0.0)
    return out
