"""Camera tamper and health checks on a downscaled grey frame (no model needed).

Four conditions, each with its own start / end lifecycle (it must hold for ``hold_s`` of frame
time to start, and be clear as long to end):

* ``blocked``: the view is covered or dark (the frame is nearly uniform, or far darker than
  normal);
* ``defocused``: sharpness (variance of the Laplacian) far below the camera's learned normal;
* ``moved``: most textured cells of a coarse grid no longer correlate with the learned
  reference view (a person walking by changes a few cells; a turned camera changes nearly all);
* ``frozen``: identical frames for ``frozen_s``.

Thresholds are learned per camera during ``warmup_s`` (normal sharpness, contrast, brightness and
the reference view); nothing is reported during the warm-up.
"""

from __future__ import annotations

__all__ = ["TAMPER_KINDS", "TamperMonitor", "TamperStep", "tamper_event"]

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.config import TamperConfig
from edge_app.domain import EndReason, Event, Phase, Severity
from edge_app.ids import new_ulid
from edge_app.vision.rules import EventContext

TAMPER_KINDS = ("blocked", "defocused", "moved", "frozen")
_WIDTH, _GRID = 160, (8, 6)  # analysis width in pixels; grid columns x rows for "moved"
_CELL_CORR = 0.5  # a textured cell "matches" the reference above this correlation
_TEXTURED = 4.0  # grey-level std below which a cell has no texture to compare


@dataclass(frozen=True, slots=True)
class TamperStep:
    """One lifecycle step: ``kind`` (one of ``TAMPER_KINDS``), phase, and measured values."""

    kind: str
    phase: Phase
    extra: dict[str, object]


@dataclass(slots=True)
class _Condition:
    active: bool = False
    since: float | None = None  # when the raw condition last flipped towards the other state
    started: float = 0.0


class TamperMonitor:
    """Tamper checks of one camera. Feed every frame (cheap); not thread-safe."""

    def __init__(self, config: TamperConfig) -> None:
        self.config = config
        self._first: float | None = None
        self._learn: list[tuple[float, float, float]] = []  # (sharpness, std, mean)
        self._ref_sum: NDArray[np.float32] | None = None
        self._reference: NDArray[np.float32] | None = None
        self._normal = (0.0, 0.0, 0.0)
        self._previous: NDArray[np.uint8] | None = None
        self._same_since: float | None = None
        self._conditions = {kind: _Condition() for kind in TAMPER_KINDS}
        self.values: dict[str, float] = {}
        """Last measured values (sharpness, std, mean, moved share), for logs and tests."""

    @property
    def learned(self) -> bool:
        """Whether the warm-up is over and thresholds are set."""
        return self._reference is not None

    @property
    def troubled(self) -> bool:
        """Whether a condition holds or is building up (seen, its ``hold_s`` not yet over):
        the view itself changed, so an inspecting camera reports no anomaly meanwhile."""
        return any(c.active or c.since is not None for c in self._conditions.values())

    def update(self, mono: float, image_bgr: NDArray[np.uint8]) -> list[TamperStep]:
        """Feed one BGR frame at ``mono`` seconds; returns tamper starts and ends."""
        if not self.config.enabled:
            return []
        h, w = image_bgr.shape[:2]
        size = (min(_WIDTH, w), max(1, round(h * min(_WIDTH, w) / w)))
        small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        grey: NDArray[np.uint8] = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), np.uint8)
        frozen_raw = self._frozen(mono, grey)
        sharpness = float(cv2.Laplacian(grey, cv2.CV_32F).var())
        std, mean = float(grey.std()), float(grey.mean())
        smooth = cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)
        if self._first is None:
            self._first = mono
        if self._reference is None:
            self._learn.append((sharpness, std, mean))
            self._ref_sum = smooth if self._ref_sum is None else self._ref_sum + smooth
            if mono - self._first >= self.config.warmup_s and len(self._learn) >= 3:
                self._normal = tuple(float(v) for v in np.median(self._learn, axis=0))  # type: ignore[assignment]
                self._reference = (self._ref_sum / len(self._learn)).astype(np.float32)
            return []
        normal_sharp, normal_std, normal_mean = self._normal
        blocked = std < max(6.0, 0.25 * normal_std) or (mean < 30 and mean < 0.25 * normal_mean)
        moved_share = self._moved_share(smooth)
        self.values = {"sharpness": sharpness, "std": std, "mean": mean, "moved": moved_share}
        raw = {
            "blocked": blocked,
            # a covered lens is not "defocused" or "moved": report the cause once
            "defocused": not blocked and sharpness < self.config.sharpness_ratio * normal_sharp,
            "moved": not blocked and moved_share >= self.config.moved_share,
            "frozen": frozen_raw and not blocked,  # a black frame repeats itself too
        }
        steps: list[TamperStep] = []
        for kind, on in raw.items():
            step = self._lifecycle(kind, on, mono)
            if step is not None:
                steps.append(step)
        return steps

    def _frozen(self, mono: float, grey: NDArray[np.uint8]) -> bool:
        previous, self._previous = self._previous, grey
        if previous is None or previous.shape != grey.shape or np.any(previous != grey):
            self._same_since = None
            return False
        if self._same_since is None:
            self._same_since = mono
        return mono - self._same_since >= self.config.frozen_s

    def _moved_share(self, smooth: NDArray[np.float32]) -> float:
        assert self._reference is not None
        cols, rows = _GRID
        h, w = smooth.shape
        textured = changed = 0
        for r in range(rows):
            for c in range(cols):
                ys = slice(r * h // rows, (r + 1) * h // rows)
                xs = slice(c * w // cols, (c + 1) * w // cols)
                ref, cur = self._reference[ys, xs], smooth[ys, xs]
                if ref.std() < _TEXTURED:
                    continue
                textured += 1
                if cur.std() < _TEXTURED:
                    changed += 1
                    continue
                corr = float(np.corrcoef(ref.ravel(), cur.ravel())[0, 1])
                changed += corr < _CELL_CORR
        return changed / textured if textured else 0.0

    def _lifecycle(self, kind: str, on: bool, mono: float) -> TamperStep | None:
        cond = self._conditions[kind]
        if on == cond.active:
            cond.since = None
            return None
        if cond.since is None:
            cond.since = mono
        hold = 0.0 if kind == "frozen" else self.config.hold_s  # frozen_s already waited
        if mono - cond.since < hold:
            return None
        cond.active, cond.since = on, None
        values: dict[str, object] = {k: round(v, 3) for k, v in self.values.items()}
        if on:
            cond.started = mono
            return TamperStep(kind, Phase.START, values)
        return TamperStep(kind, Phase.END, values | {"duration_s": round(mono - cond.started, 3)})

    def finish(self) -> list[TamperStep]:
        """End every active condition (source ended, config changed)."""
        steps = []
        for kind, cond in self._conditions.items():
            if cond.active:
                cond.active = False
                steps.append(TamperStep(kind, Phase.END, {"end_reason": EndReason.SOURCE_ENDED}))
        return steps


def tamper_event(
    step: TamperStep,
    *,
    ctx: EventContext,
    camera: str,
    severity: Severity,
    mono: float,
    wall: float,
    start_id: str | None = None,
) -> Event:
    """The event for one tamper step: rule ``tamper_<kind>``, label ``tamper``, the whole
    frame as its box; an ``end`` carries its ``start_id``."""
    extra = dict(step.extra)
    if start_id is not None:
        extra["start_id"] = start_id
    return Event(
        id=new_ulid(wall),
        device=ctx.device,
        camera=camera,
        rule=f"tamper_{step.kind}",
        phase=step.phase,
        severity=severity,
        wall=wall,
        mono=mono,
        label="tamper",
        score=1.0,
        bbox=(0.0, 0.0, 1.0, 1.0),
        model=ctx.model,
        config_version=ctx.config_version,
        extra=extra,
    )
