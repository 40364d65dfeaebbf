"""The live view's frames: a one-slot holder the camera loop fills only while someone watches,
and the drawing of what the loop saw and decided onto a copy of the frame.

Viewing must never slow the frame loop, so the loop does no image work for it: when
``PreviewSlot.wanted`` is set (a viewer asked since the last frame), the loop stores one
``Preview`` (references to the frame and what it decided; no copy) and clears the flag; with
nobody watching it costs one attribute read per frame. Annotating and JPEG encoding happen on
the viewer's HTTP thread (``annotate``; throttled in ``edge_app.ui.live``).
"""

from __future__ import annotations

__all__ = ["Preview", "PreviewSlot", "annotate"]

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.actions.snapshot import draw_detections
from edge_app.domain import BBox, Detections, Frame, Image, as_image

_ZONE = (230, 160, 0)  # BGR: blue-ish, apart from the green/red boxes
_LINE = (0, 200, 230)
_TRACK = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class Preview:
    """One frame as the camera loop saw it: ``detections`` (the last ones, when the motion gate
    skipped this frame), ``tracks`` ``(id, label, box)``, ``motion`` (None: no motion gate;
    else whether this frame went to the detector), the open ``tamper`` conditions, the zones
    ``(name, polygon)`` and crossing lines ``(rule, (a, b))``, all normalised 0..1."""

    frame: Frame
    detections: Detections
    tracks: tuple[tuple[int, str, BBox], ...]
    motion: bool | None
    tamper: tuple[str, ...]
    zones: tuple[tuple[str, tuple[tuple[float, float], ...]], ...]
    lines: tuple[tuple[str, tuple[tuple[float, float], tuple[float, float]]], ...]
    config_version: int


class PreviewSlot:
    """Latest ``Preview`` of one camera. The camera loop calls ``put`` when ``wanted``; viewers
    call ``take``. Plain attribute stores: atomic under the GIL, no lock on the frame loop."""

    def __init__(self) -> None:
        self.wanted = False
        self._latest: Preview | None = None

    def put(self, preview: Preview) -> None:
        """Camera loop: keep ``preview`` (replacing the last) and stop asking for more."""
        self._latest = preview
        self.wanted = False

    def take(self) -> Preview | None:
        """Viewer: the latest preview (None before any), and ask the loop for the next one."""
        self.wanted = True
        return self._latest


def annotate(preview: Preview) -> Image:
    """A copy of the frame with zones, lines, boxes with labels, track ids and the motion and
    tamper state drawn on it (pixels of the original frame)."""
    out = draw_detections(preview.frame.image, preview.detections)
    h, w = out.shape[:2]
    thick = max(1, round(min(w, h) / 300))
    scale = 0.4 * thick

    def px(point: tuple[float, float]) -> tuple[int, int]:
        return int(point[0] * w), int(point[1] * h)

    for name, polygon in preview.zones:
        pts = [px(p) for p in polygon]
        cv2.polylines(out, [_points(pts)], True, _ZONE, thick, cv2.LINE_AA)
        cv2.putText(out, name, pts[0], cv2.FONT_HERSHEY_SIMPLEX, scale, _ZONE, thick, cv2.LINE_AA)
    for name, (a, b) in preview.lines:
        cv2.line(out, px(a), px(b), _LINE, thick * 2, cv2.LINE_AA)
        cv2.putText(out, name, px(a), cv2.FONT_HERSHEY_SIMPLEX, scale, _LINE, thick, cv2.LINE_AA)
    for track_id, _, box in preview.tracks:
        x, y = px((box[0], box[3]))
        cv2.putText(
            out,
            f"#{track_id}",
            (x, max(12, y - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            _TRACK,
            thick,
            cv2.LINE_AA,
        )
    state = [f"v{preview.config_version}"]
    if preview.motion is not None:
        state.append("detecting" if preview.motion else "still: gated")
    state.extend(f"TAMPER {kind}" for kind in preview.tamper)
    cv2.putText(
        out,
        "  ".join(state),
        (4, h - 6),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 230) if preview.tamper else _TRACK,
        thick,
        cv2.LINE_AA,
    )
    return as_image(out)


def _points(pts: list[tuple[int, int]]) -> NDArray[np.int32]:
    return np.asarray(pts, dtype=np.int32).reshape(-1, 1, 2)
