"""A camera's classifier stage: per region (a zone's box, or the whole frame), the top labels.

Each inspected frame gives, for every classified region, the ``top_k`` labels and their
probabilities as detections whose box is the region, to the rules named in
``classify.rules``. Those rules use ``labels``, ``min_score``, ``min_frames``, ``review_band``,
schedules and cooldown as for the detector; a rule with a ``zone`` sees only that zone's
region (the regions are handed to the rules as rectangles slightly larger than the box, so
a box always lies inside its own zone).
"""

from __future__ import annotations

__all__ = ["ClassifyInspector", "regions"]

import numpy as np

from edge_app.config import CameraConfig, ClassifyConfig, RuleConfig, ZoneConfig
from edge_app.domain import Detections, Event, Frame
from edge_app.vision.classifier import Classifier
from edge_app.vision.rules import EventContext
from edge_app.vision.stage import RuleStage

Region = tuple[float, float, float, float]


def regions(camera: CameraConfig, config: ClassifyConfig) -> list[tuple[str | None, Region]]:
    """(zone name or None, x1, y1, x2, y2 normalised) of each region to classify."""
    if not config.zones:
        return [(None, (0.0, 0.0, 1.0, 1.0))]
    polygons = {z.name: z.polygon for z in camera.zones}
    out: list[tuple[str | None, Region]] = []
    for name in config.zones:
        xs = [max(0.0, min(1.0, p[0])) for p in polygons[name]]
        ys = [max(0.0, min(1.0, p[1])) for p in polygons[name]]
        out.append((name, (min(xs), min(ys), max(xs), max(ys))))
    return out


def _rule_camera(camera: CameraConfig, boxes: list[tuple[str | None, Region]]) -> CameraConfig:
    """``camera`` with each classified zone replaced by a rectangle a little larger than its
    box, so that the box's anchor (its bottom centre) lies inside, never on an edge."""
    pad = 1e-3
    zones = [z for z in camera.zones if z.name not in {n for n, _ in boxes}]
    for name, (x1, y1, x2, y2) in boxes:
        if name is not None:
            square = [
                (x1 - pad, y1 - pad),
                (x2 + pad, y1 - pad),
                (x2 + pad, y2 + pad),
                (x1 - pad, y2 + pad),
            ]
            zones.append(ZoneConfig.model_construct(name=name, polygon=square))
    return camera.model_copy(update={"zones": zones})


class ClassifyInspector(RuleStage):
    """Loads ``config``'s classifier (``ModelError``/``UnsupportedModelError`` naming the
    problem); not thread-safe."""

    config: ClassifyConfig

    def __init__(
        self,
        config: ClassifyConfig,
        camera: CameraConfig,
        rules: list[RuleConfig],
        ctx: EventContext,
    ) -> None:
        self.config = config
        self.classifier = Classifier(config.model, labels=config.labels, threads=config.threads)
        self._regions = regions(camera, config)
        super().__init__(
            _rule_camera(camera, self._regions), rules, ctx, self.classifier.model, config.every_s
        )

    def mine(self, rules: list[RuleConfig], camera: CameraConfig) -> list[RuleConfig]:
        return [r for r in rules if r.name in self.config.rules]

    def rules_changed(
        self, camera: CameraConfig, rules: list[RuleConfig], frame: Frame
    ) -> list[Event]:
        self._regions = regions(camera, self.config)
        return super().rules_changed(_rule_camera(camera, self._regions), rules, frame)

    def inspect(self, frame: Frame, view_changed: bool) -> tuple[list[Event], Detections]:
        h, w = frame.image.shape[:2]
        boxes: list[Region] = []
        scores: list[float] = []
        labels: list[str] = []
        for _, (x1, y1, x2, y2) in self._regions:
            crop = frame.image[
                round(y1 * h) : max(round(y2 * h), round(y1 * h) + 1),
                round(x1 * w) : max(round(x2 * w), round(x1 * w) + 1),
            ]
            for label, score in self.classifier.top(crop, self.config.top_k):
                boxes.append((x1, y1, x2, y2))
                scores.append(score)
                labels.append(label)
        self.inspected += 1
        detections = Detections(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32),
            np.zeros(len(labels), np.int32),
            tuple(labels),
        )
        return self._rules.update(frame, detections), detections
