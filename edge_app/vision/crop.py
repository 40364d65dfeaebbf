"""Detecting on the region around small motion: the crop window and the way back.

When something small moves in a quiet scene (a person far away, a cat), the detector can look
at a window around the motion instead of the whole frame. The window has the model input's
aspect ratio, so the detector's resize does not distort it, and it is never smaller than the
model input (no upscaling). A small object then covers many more model pixels, and the resize
has less to do; the inference itself costs the same. Boxes found in the window are mapped back
to the whole frame before anything else sees them.

All sizes here are (width, height) in pixels and windows are (x, y, width, height) in frame
pixels; boxes are x1, y1, x2, y2 normalised to 0..1.
"""

from __future__ import annotations

__all__ = ["Window", "crop_box_map", "motion_window", "to_frame"]

from edge_app.domain import Detections
from edge_app.vision.preprocess import BoxMap

Window = tuple[int, int, int, int]
"""(x, y, width, height) in frame pixels."""


def motion_window(
    region: tuple[float, float, float, float],
    frame_size: tuple[int, int],
    model_size: tuple[int, int],
    *,
    margin: float = 0.25,
    max_share: float = 0.5,
) -> Window | None:
    """The window to detect on for motion in ``region`` (x1, y1, x2, y2, normalised), or None
    when the whole frame should be used.

    The region grows by ``margin`` of its size on each side, then to the model's aspect ratio
    and to at least the model's input size, centred on the region and shifted (never shrunk)
    to lie inside the frame. None when that window would cover more than ``max_share`` of
    the frame's area or does not fit in the frame.
    """
    fw, fh = frame_size
    mw, mh = model_size
    x1, y1, x2, y2 = region
    if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
        raise ValueError(f"region must be x1 <= x2, y1 <= y2 within 0..1, got {region}")
    aspect = mw / mh
    w = (x2 - x1) * fw * (1.0 + 2.0 * margin)
    h = (y2 - y1) * fh * (1.0 + 2.0 * margin)
    w = max(w, h * aspect, float(mw))
    h = w / aspect
    width, height = round(w), round(h)
    if width > fw or height > fh or width * height > max_share * fw * fh:
        return None
    cx, cy = (x1 + x2) / 2.0 * fw, (y1 + y2) / 2.0 * fh
    x = min(max(round(cx - width / 2.0), 0), fw - width)
    y = min(max(round(cy - height / 2.0), 0), fh - height)
    return x, y, width, height


def crop_box_map(window: Window, frame_size: tuple[int, int]) -> BoxMap:
    """Map from boxes normalised to ``window`` to boxes normalised to the whole frame."""
    x, y, w, h = window
    fw, fh = frame_size
    return BoxMap(w / fw, h / fh, x / fw, y / fh)


def to_frame(detections: Detections, window: Window, frame_size: tuple[int, int]) -> Detections:
    """``detections`` made on the ``window`` crop, with boxes normalised to the whole frame."""
    if not len(detections):
        return detections
    xyxy = crop_box_map(window, frame_size).apply(detections.xyxy)
    return Detections(xyxy, detections.scores, detections.class_ids, detections.labels)
