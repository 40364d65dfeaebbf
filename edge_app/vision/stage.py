"""What a camera's inspection stages share: the rate, their own rules and their lineage.

The camera loop asks each stage ``due(mono)`` on every frame it processes and, when due,
``inspect``s the frame: the stage turns it into detections and feeds them to *its own* rules,
a ``RuleEngine`` over the rules it owns. So the detector's rules never see a frame without
objects because it was an inspection, and the other way round:

- rules whose ``labels`` include ``anomaly`` belong to the camera's anomaly stage;
- rules named in ``classify.rules`` belong to its classifier;
- every other rule watches the detector (``detection_rules``).
"""

from __future__ import annotations

__all__ = ["RuleStage", "detection_rules"]

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from edge_app.config import ANOMALY_LABEL, AnomalyConfig, CameraConfig, ClassifyConfig, RuleConfig
from edge_app.domain import Detections, EndReason, Event, Frame, ModelRef
from edge_app.vision.rules import EventContext, RuleEngine


def _owned(camera: CameraConfig) -> set[str]:
    return set(camera.classify.rules) if camera.classify is not None else set()


def detection_rules(rules: list[RuleConfig], camera: CameraConfig) -> list[RuleConfig]:
    """The rules of ``camera`` that watch the detector: not anomaly rules, and not named by
    its classifier."""
    owned = _owned(camera)
    return [r for r in rules if ANOMALY_LABEL not in r.labels and r.name not in owned]


class RuleStage:
    """What the inspection stages share: the rate, their own rules and their lineage.

    ``mine`` picks the rules the stage owns; ``model`` is the lineage its events carry; the
    stage's rules are re-made by ``rules_changed``. Subclasses implement ``inspect``.
    """

    config: AnomalyConfig | ClassifyConfig

    def __init__(
        self,
        camera: CameraConfig,
        rules: list[RuleConfig],
        ctx: EventContext,
        model: ModelRef,
        every_s: float,
    ) -> None:
        self._model = model
        self._every = every_s
        self._rules = RuleEngine(camera, self.mine(rules, camera), self._own(ctx))
        self._next_due = float("-inf")
        self.inspected = 0

    def mine(self, rules: list[RuleConfig], camera: CameraConfig) -> list[RuleConfig]:
        raise NotImplementedError

    def _own(self, ctx: EventContext) -> EventContext:
        # the stage's events name its own model as their lineage, not the detector
        return replace(ctx, model=self._model)

    @property
    def context(self) -> EventContext:
        """What the stage's events carry (device, its model, config version)."""
        return self._rules.context

    @context.setter
    def context(self, ctx: EventContext) -> None:
        self._rules.context = self._own(ctx)

    def rules_changed(
        self, camera: CameraConfig, rules: list[RuleConfig], frame: Frame
    ) -> list[Event]:
        """New rules or zones: open episodes end (``config_changed``) and the new rules
        start from scratch; returns the end events."""
        ended = self._rules.finish(frame.mono, frame.wall, EndReason.CONFIG_CHANGED)
        self._rules = RuleEngine(camera, self.mine(rules, camera), self._rules.context)
        return ended

    def due(self, mono: float) -> bool:
        """Whether the frame at ``mono`` (seconds of frame time) is to be inspected."""
        if mono < self._next_due:
            return False
        # 1 ms early, as the camera's fps: float jitter in timestamps never skips a frame
        self._next_due = mono + max(self._every - 1e-3, 0.0)
        return True

    def inspect(self, frame: Frame, view_changed: bool) -> tuple[list[Event], Detections]:
        """Inspect ``frame`` and feed the stage's rules; ``view_changed``: the tamper checks
        see a condition. Returns the events raised and the detections given to the rules."""
        raise NotImplementedError

    def overlay(self, frame: Frame) -> NDArray[np.uint8] | None:
        """What the snapshots of the stage's events are drawn on (None: the frame)."""
        return None

    def finish(
        self, mono: float, wall: float, reason: EndReason = EndReason.SOURCE_ENDED
    ) -> list[Event]:
        """End every open episode of the stage's rules."""
        return self._rules.finish(mono, wall, reason)
