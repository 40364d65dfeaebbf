"""Local action: JPEG snapshots per event, written before the event is stored.

Three files per snapshot: ``<event id>.jpg``, annotated (every detection boxed, the event's own
in red), ``<event id>.clean.jpg``, the frame as the camera saw it (for review, or for training
data without drawn boxes), and ``<event id>.crop.jpg``, the event's object with some context
around it (``crop_box``), clean. The event's ``snapshot`` names the annotated one (``file``,
``sha256``, ``bytes``; docs/events.md); the other two lie beside it (``sibling``). Their paths
are not repeated in the event: it travels in every batch, and at IoT Core's 512 KB/s every byte
of it costs drain throughput (two paths would add ~110 bytes, a fifth of an event). A
per-object ``start`` gets one, and so does each ``update`` raised for a better snapshot (the
frame is the track's new best sighting), so every such update points at its own new files.

Files are 0600 in 0700 folders, written atomically and durably (``edge_app.files``). Works with
no network. A snapshot that cannot be written (disk full, read-only) is logged and the event
goes on without it: losing a picture must never lose the event. Local retention
(``edge_app.actions.retention``) deletes them by age and total size, never while their event
or upload is pending.

With a ``Sealer`` that seals new items (``encryption.enabled``), each JPEG is encrypted in
memory and written as ``<name>.enc`` (``edge_app.atrest.files``) the same way: no clear byte
reaches the disk. The event's ``snapshot`` still names the clear file, and its ``sha256`` and
``bytes`` are of the clear JPEG; read it back with ``edge_app.atrest.read_stored``. Retention
treats ``<event id>.jpg.enc`` and its siblings exactly like the clear files.
"""

from __future__ import annotations

__all__ = ["SnapshotWriter", "crop_box", "draw_detections", "sibling"]

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2

from edge_app.atrest import Sealer, sealed_file
from edge_app.domain import BBox, Detections, Event, Frame, Image, SnapshotRef, as_image
from edge_app.files import private_dir, write_atomic

log = logging.getLogger(__name__)
_GREEN = (0, 200, 0)
_RED = (0, 0, 230)
# The crop shows the object plus this fraction of its size on each side (what it stands on,
# what it carries), and is never smaller than _CROP_MIN_PX a side where the frame allows.
_CROP_MARGIN = 0.25
_CROP_MIN_PX = 96


def sibling(file: str | Path, kind: Literal["clean", "crop"]) -> Path:
    """The ``clean`` or ``crop`` JPEG beside the annotated snapshot ``file`` (the event's
    ``snapshot.file``, relative to the snapshot directory): ``<id>.jpg`` -> ``<id>.<kind>.jpg``."""
    path = Path(file)
    return path.with_name(f"{path.stem}.{kind}.jpg")


def crop_box(bbox: BBox, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box ``(x1, y1, x2, y2)`` of the crop around ``bbox`` (normalised) in a frame of
    ``width`` x ``height``: the box widened by a quarter of its size each side, at least
    ``_CROP_MIN_PX`` square-ish, shifted (not shrunk) to stay inside the frame."""
    x1, y1, x2, y2 = bbox
    bw, bh = (x2 - x1) * width, (y2 - y1) * height
    cw = min(width, max(bw * (1 + 2 * _CROP_MARGIN), _CROP_MIN_PX))
    ch = min(height, max(bh * (1 + 2 * _CROP_MARGIN), _CROP_MIN_PX))
    cx, cy = (x1 + x2) / 2 * width, (y1 + y2) / 2 * height
    left = min(max(cx - cw / 2, 0.0), width - cw)
    top = min(max(cy - ch / 2, 0.0), height - ch)
    return round(left), round(top), round(left + cw), round(top + ch)


def draw_detections(image: Image, detections: Detections, highlight: int | None = None) -> Image:
    """A copy of ``image`` with each box and its ``label score`` drawn (``highlight`` in red)."""
    out = image.copy()
    h, w = out.shape[:2]
    thickness = max(1, round(min(w, h) / 300))
    for i, det in enumerate(detections):
        x1, y1, x2, y2 = det.bbox
        p1, p2 = (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h))
        color = _RED if i == highlight else _GREEN
        cv2.rectangle(out, p1, p2, color, thickness)
        text = f"{det.label} {det.score:.2f}"
        cv2.putText(
            out,
            text,
            (p1[0], max(12, p1[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            color,
            thickness,
            cv2.LINE_AA,
        )
    return as_image(out)


class SnapshotWriter:
    """Writes ``<root>/<camera>/<YYYY-MM-DD>/<event id>.jpg``, ``.clean.jpg`` and ``.crop.jpg``;
    returns the event's ``SnapshotRef``: ``file``, ``sha256`` and ``bytes`` of the annotated
    JPEG (the one uploaded); ``sibling(file, kind)`` names the other two. With ``sealer`` sealing
    new items, each is written encrypted as ``<name>.enc``."""

    def __init__(self, root: Path, quality: int = 85, *, sealer: Sealer | None = None) -> None:
        self.root = root
        self._sealer = sealer
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self.failures = 0

    def save(
        self, frame: Frame, detections: Detections, event: Event, *, base: Image | None = None
    ) -> SnapshotRef | None:
        """Write the three JPEGs of ``frame``; ``None`` (and a log line) if any cannot be.
        ``base`` (same size as the frame, e.g. with an anomaly heat map blended in) is what
        the annotated JPEG is drawn on instead of the frame; the clean one is the frame."""
        highlight = next(
            (
                i
                for i, d in enumerate(detections)
                if d.bbox == event.bbox and d.label == event.label
            ),
            None,
        )
        day = datetime.fromtimestamp(event.wall, UTC).strftime("%Y-%m-%d")
        folder = Path(event.camera) / day
        image = frame.image
        x1, y1, x2, y2 = crop_box(event.bbox, image.shape[1], image.shape[0])
        drawn = draw_detections(image if base is None else base, detections, highlight)
        annotated = self._encode(drawn, event)
        clean = self._encode(image, event)
        crop = self._encode(as_image(image[y1:y2, x1:x2]), event)
        if annotated is None or clean is None or crop is None:
            return None
        rel = folder / f"{event.id}.jpg"
        clean_rel, crop_rel = sibling(rel, "clean"), sibling(rel, "crop")
        # the annotated file last: the one the event and the upload name exists only if all do;
        # its folder fsync makes all three renames durable (one folder fsync instead of three)
        for path, data in ((clean_rel, clean), (crop_rel, crop), (rel, annotated)):
            stored, body = sealed_file(self._sealer, path, data)
            if not self._write(stored, body, event, last=path is rel):
                return None
        return SnapshotRef(str(rel), hashlib.sha256(annotated).hexdigest(), len(annotated))

    def _encode(self, image: Image, event: Event) -> bytes | None:
        ok, jpeg = cv2.imencode(".jpg", image, self._params)
        if not ok:
            self.failures += 1
            log.error("snapshot for event %s: JPEG encoding failed", event.id)
            return None
        return jpeg.tobytes()

    def _write(self, rel: Path, data: bytes, event: Event, *, last: bool) -> bool:
        path = self.root / rel
        try:
            # 0600 in 0700 folders; durable before the event that names it is committed, and
            # a reader (the snapshot lane) never sees half a JPEG
            write_atomic(private_dir(path.parent) / path.name, data, sync_folder=last)
        except OSError as exc:
            self.failures += 1
            log.error(
                "snapshot for event %s not written (%s); the event is kept without it",
                event.id,
                exc.strerror,
            )
            return False
        return True
