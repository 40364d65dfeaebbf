"""Inspection stages of a camera: anomaly scoring and image classification, beside the detector.

Each stage (``edge_app.vision.stage.RuleStage``) has its own rules; here the anomaly stage,
whose inspected frames give the most anomalous region as one detection labelled ``anomaly``,
and ``build_inspectors``, which loads the stages a camera configures.

A global change is no defect: while the tamper checks see a condition, or when
``global_share`` of the patches is at or above half the threshold, an anomaly frame gives no
detection (counted in ``suppressed``), and the tamper checks report the cause.
"""

from __future__ import annotations

__all__ = ["AnomalyInspector", "build_inspectors"]

import numpy as np
from numpy.typing import NDArray

from edge_app.config import ANOMALY_LABEL, AnomalyConfig, CameraConfig, RuleConfig
from edge_app.domain import Detections, Event, Frame
from edge_app.vision.anomaly import AnomalyModel, AnomalyResult, AnomalyScorer, heat_overlay
from edge_app.vision.classification import ClassifyInspector
from edge_app.vision.features import FeatureExtractor
from edge_app.vision.rules import EventContext
from edge_app.vision.stage import RuleStage


class AnomalyInspector(RuleStage):
    """Loads ``config``'s model and extractor (``ModelError`` with what to do if either is
    missing, not what it should be, or they do not belong together); not thread-safe.

    Counters: ``inspected`` frames, ``suppressed`` (global change), ``last`` result.
    """

    config: AnomalyConfig

    def __init__(
        self,
        config: AnomalyConfig,
        camera: CameraConfig,
        rules: list[RuleConfig],
        ctx: EventContext,
    ) -> None:
        model = AnomalyModel.load(config.model)
        layer = model.meta.get("extractor", {}).get("layer")
        extractor = FeatureExtractor(config.extractor, threads=config.threads, layer=layer)
        self.config = config
        self.scorer = AnomalyScorer(model, extractor)
        super().__init__(camera, rules, ctx, model.ref, config.every_s)
        self.suppressed = 0
        self.last: AnomalyResult | None = None

    def mine(self, rules: list[RuleConfig], camera: CameraConfig) -> list[RuleConfig]:
        return [r for r in rules if ANOMALY_LABEL in r.labels]

    def inspect(self, frame: Frame, view_changed: bool) -> tuple[list[Event], Detections]:
        result = self.scorer.score(frame.image)
        self.inspected += 1
        self.last = result
        if view_changed or result.share >= self.config.global_share:
            self.suppressed += 1
            detections = Detections.empty()
        else:
            detections = Detections(
                np.asarray([result.box], np.float32),
                np.asarray([result.score], np.float32),
                np.zeros(1, np.int32),
                (ANOMALY_LABEL,),
            )
        return self._rules.update(frame, detections), detections

    def overlay(self, frame: Frame) -> NDArray[np.uint8] | None:
        """``frame``'s image with the last anomaly map blended in."""
        if self.last is None:
            return None
        model = self.scorer.model
        return heat_overlay(frame.image, self.last, model.threshold, model.region)


def build_inspectors(
    camera: CameraConfig, rules: list[RuleConfig], ctx: EventContext
) -> list[RuleStage]:
    """The inspection stages ``camera`` configures (anomaly, then classifier), loaded."""
    stages: list[RuleStage] = []
    if camera.anomaly is not None:
        stages.append(AnomalyInspector(camera.anomaly, camera, rules, ctx))
    if camera.classify is not None:
        stages.append(ClassifyInspector(camera.classify, camera, rules, ctx))
    return stages
