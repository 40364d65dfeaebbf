"""One camera's anomaly inspection: rate, scoring, global changes, and the anomaly rules.

The camera loop asks ``due(mono)`` on each frame it processes and, when due, ``inspect``s it:
the frame is scored (``AnomalyScorer``), and the most anomalous region becomes one detection
labelled ``anomaly`` that feeds the rules whose labels include ``anomaly`` (their own
``RuleEngine``, so the detector's rules never see a frame without objects because it was an
inspection, and the other way round). A global change is no defect: while the tamper checks see
a condition, or when ``global_share`` of the patches is above the threshold, the frame gives no
detection (counted in ``suppressed``) and the tamper checks report the cause.
"""

from __future__ import annotations

__all__ = ["AnomalyInspector", "detection_rules", "inspection_rules"]

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from edge_app.config import ANOMALY_LABEL, AnomalyConfig, CameraConfig, RuleConfig
from edge_app.domain import Detections, EndReason, Event, Frame
from edge_app.vision.anomaly import AnomalyModel, AnomalyResult, AnomalyScorer, heat_overlay
from edge_app.vision.features import FeatureExtractor
from edge_app.vision.rules import EventContext, RuleEngine


def inspection_rules(rules: list[RuleConfig]) -> list[RuleConfig]:
    """The rules that watch anomaly scores (their labels include ``anomaly``)."""
    return [r for r in rules if ANOMALY_LABEL in r.labels]


def detection_rules(rules: list[RuleConfig]) -> list[RuleConfig]:
    """The rules that watch the detector (all the others)."""
    return [r for r in rules if ANOMALY_LABEL not in r.labels]


class AnomalyInspector:
    """Loads ``config``'s model and extractor (``ModelError`` with what to do if either is
    missing, not what it should be, or they do not belong together); not thread-safe.

    Counters: ``inspected`` frames, ``suppressed`` (global change), ``last`` result, and
    ``inference_ms`` of the last inspection.
    """

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
        self._camera = camera
        self._rules = RuleEngine(camera, inspection_rules(rules), self._own(ctx))
        self._next_due = float("-inf")
        self.inspected = 0
        self.suppressed = 0
        self.last: AnomalyResult | None = None

    def _own(self, ctx: EventContext) -> EventContext:
        # anomaly events name the anomaly model as their lineage, not the detector
        return replace(ctx, model=self.scorer.model.ref)

    @property
    def context(self) -> EventContext:
        return self._rules.context

    @context.setter
    def context(self, ctx: EventContext) -> None:
        self._rules.context = self._own(ctx)

    def rules_changed(
        self, camera: CameraConfig, rules: list[RuleConfig], frame: Frame
    ) -> list[Event]:
        """New rules or zones: the open episodes end (``config_changed``) and the new rules
        start from scratch; returns the end events."""
        ended = self._rules.finish(frame.mono, frame.wall, EndReason.CONFIG_CHANGED)
        self._camera = camera
        self._rules = RuleEngine(camera, inspection_rules(rules), self._rules.context)
        return ended

    def due(self, mono: float) -> bool:
        """Whether the frame at ``mono`` (seconds of frame time) is to be inspected."""
        if mono < self._next_due:
            return False
        # 1 ms early, as the camera's fps: float jitter in timestamps never skips a frame
        self._next_due = mono + max(self.config.every_s - 1e-3, 0.0)
        return True

    def inspect(self, frame: Frame, view_changed: bool) -> tuple[list[Event], Detections]:
        """Score ``frame`` and feed the anomaly rules; ``view_changed``: the tamper checks see
        a condition. Returns the events raised and the detection given to the rules."""
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

    def overlay(self, frame: Frame) -> NDArray[np.uint8]:
        """``frame``'s image with the last anomaly map blended in (for snapshots)."""
        assert self.last is not None, "overlay() after inspect()"
        model = self.scorer.model
        return heat_overlay(frame.image, self.last, model.threshold, model.region)

    def finish(
        self, mono: float, wall: float, reason: EndReason = EndReason.SOURCE_ENDED
    ) -> list[Event]:
        """End every open anomaly episode."""
        return self._rules.finish(mono, wall, reason)
