"""``edge-app review export``: reviewed events as a training set (COCO or YOLO).

For every event with a verdict in the journal (the latest verdict wins), the clean snapshot
(the frame as the camera saw it, decrypted when stored encrypted) is copied as
``images/<event id>.jpg``, with:

* ``confirmed``: the original label and box; ``relabelled``: the corrected label and box;
  ``rejected``: no box (the image is kept as a negative example: nothing of that class there);
* ``format: coco``: ``annotations.json`` (images, annotations with pixel ``[x, y, w, h]``,
  categories numbered from 1 in name order);
* ``format: yolo``: ``labels/<event id>.txt`` (``class cx cy w h`` normalised, class numbered
  from 0 in name order), ``classes.txt`` and ``data.yaml`` (``path``, ``train``, ``val``,
  ``names``);
* ``manifest.json`` in both: per image the event, the review, the verdict and the model (name,
  sha256) that made the original decision.

Events whose snapshot is gone (retention) are counted and skipped, never guessed.
"""

from __future__ import annotations

__all__ = ["ExportReport", "export_reviews"]

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edge_app.atrest import Sealer, read_stored
from edge_app.errors import EdgeAppError
from edge_app.files import private_dir, write_atomic
from edge_app.outbox import EventJournal

Format = Literal["coco", "yolo"]


@dataclass(slots=True)
class ExportReport:
    """What an export wrote: ``images`` copied, ``boxes`` written, ``skipped`` event ids whose
    snapshot was missing or unreadable, with the reason."""

    images: int = 0
    boxes: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Item:
    event: dict[str, Any]
    review: dict[str, Any]
    image: bytes
    width: int
    height: int

    @property
    def boxes(self) -> list[tuple[str, list[float]]]:
        if self.review.get("verdict") == "rejected":
            return []
        return [(str(self.review["label"]), [float(v) for v in self.review["bbox"]])]


def export_reviews(
    journal: EventJournal,
    snapshot_dir: Path,
    out: Path,
    *,
    fmt: Format = "coco",
    sealer: Sealer | None = None,
) -> ExportReport:
    """Write the reviewed events of ``journal`` to ``out`` (created 0700; files 0600: they
    are pictures of people) as ``fmt``. Raises ``OSError`` if ``out`` cannot be written."""
    report = ExportReport()
    latest: dict[str, dict[str, Any]] = {}
    for row in journal.reviews():
        latest[str(row.doc["review_of"])] = row.doc  # oldest first: the last verdict wins
    items: list[_Item] = []
    for event_id, review in latest.items():
        item = _item(journal, snapshot_dir, event_id, review, sealer=sealer, report=report)
        if item is not None:
            items.append(item)
    private_dir(out / "images")
    names = sorted({label for item in items for label, _ in item.boxes})
    for item in items:
        write_atomic(out / "images" / f"{item.event['id']}.jpg", item.image)
        report.images += 1
        report.boxes += len(item.boxes)
    if fmt == "coco":
        _write(out / "annotations.json", _coco(items, names))
    else:
        _yolo(out, items, names)
    _write(out / "manifest.json", _manifest(items, fmt, report))
    return report


def _item(
    journal: EventJournal,
    snapshot_dir: Path,
    event_id: str,
    review: dict[str, Any],
    *,
    sealer: Sealer | None,
    report: ExportReport,
) -> _Item | None:
    row = journal.get(event_id)
    snap = None if row is None else row.doc.get("snapshot")
    if row is None or not isinstance(snap, dict):
        report.skipped[event_id] = "no snapshot recorded for the event"
        return None
    rel = Path(str(snap["file"]))
    clean = (snapshot_dir / rel.with_name(f"{rel.stem}.clean.jpg")).resolve()
    if not clean.is_relative_to(snapshot_dir.resolve()):
        report.skipped[event_id] = "snapshot path outside the snapshot directory"
        return None
    try:
        data = read_stored(clean, sealer)
    except (OSError, EdgeAppError) as exc:  # gone, or sealed with a key we lack
        report.skipped[event_id] = f"clean snapshot unreadable: {exc}"
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        report.skipped[event_id] = "clean snapshot is not a JPEG"
        return None
    height, width = image.shape[:2]
    return _Item(row.doc, review, data, int(width), int(height))


def _coco(items: list[_Item], names: list[str]) -> dict[str, Any]:
    ids = {name: i + 1 for i, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, item in enumerate(items, start=1):
        images.append(
            {
                "id": n,
                "file_name": f"images/{item.event['id']}.jpg",
                "width": item.width,
                "height": item.height,
            }
        )
        for label, (x1, y1, x2, y2) in item.boxes:
            w, h = (x2 - x1) * item.width, (y2 - y1) * item.height
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": n,
                    "category_id": ids[label],
                    "bbox": [
                        round(x1 * item.width, 2),
                        round(y1 * item.height, 2),
                        round(w, 2),
                        round(h, 2),
                    ],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": name} for name, i in ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def _yolo(out: Path, items: list[_Item], names: list[str]) -> None:
    ids = {name: i for i, name in enumerate(names)}
    private_dir(out / "labels")
    for item in items:
        lines = [
            f"{ids[label]} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"
            for label, (x1, y1, x2, y2) in item.boxes
        ]
        text = "".join(f"{line}\n" for line in lines)
        write_atomic(out / "labels" / f"{item.event['id']}.txt", text.encode())
    write_atomic(out / "classes.txt", "".join(f"{n}\n" for n in names).encode())
    yaml_names = "\n".join(f"  {i}: {json.dumps(n)}" for i, n in enumerate(names))
    data = f"path: .\ntrain: images\nval: images\nnames:\n{yaml_names}\n"
    write_atomic(out / "data.yaml", data.encode())


def _manifest(items: list[_Item], fmt: str, report: ExportReport) -> dict[str, Any]:
    entries = []
    for item in items:
        event, review = item.event, item.review
        entries.append(
            {
                "image": f"images/{event['id']}.jpg",
                "event_id": event["id"],
                "review_id": review["id"],
                "verdict": review.get("verdict"),
                "label": review.get("label"),
                "bbox": review.get("bbox"),
                "original": {k: event.get(k) for k in ("rule", "label", "score", "bbox")},
                "model": event.get("model"),
                "camera": event.get("camera"),
                "ts": event.get("ts"),
            }
        )
    models = sorted({json.dumps(e["model"], sort_keys=True) for e in entries})
    return {
        "schema": "edge-app/review-export/1",
        "format": fmt,
        "images": entries,
        "models": [json.loads(m) for m in models],
        "skipped": report.skipped,
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(doc, indent=1) + "\n").encode())
