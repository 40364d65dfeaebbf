"""Review verdicts and their export: parsing, the review event, the journal, COCO and YOLO.

Real parts: the SQLite journal, snapshots written by the real ``SnapshotWriter`` (encrypted
with a real key in one case), the CLI; the Lambda's own batch decoder accepts review events.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.actions import SnapshotWriter
from edge_app.atrest import Sealer
from edge_app.cli import main
from edge_app.clock import FakeClock
from edge_app.convert.frames import sample_frames
from edge_app.domain import Detections, Event, Frame, as_image
from edge_app.ids import new_ulid
from edge_app.outbox import EventJournal
from edge_app.ui import ReviewError, export_reviews, parse_verdict, review_event
from edge_cloud.batch import Batch, check_events, decode_batch
from tests.factories import DEVICE, make_event

KEY = bytes(range(32))
CORRECTED = [0.25, 0.25, 0.5, 0.75]
ID = "01JD0000000000000000000000"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"event_id": "x", "verdict": "confirmed"}).encode(), "event_id"),
        (json.dumps({"event_id": ID, "verdict": "maybe"}).encode(), "verdict"),
        (json.dumps({"event_id": ID, "verdict": "relabelled"}).encode(), "label"),
        (json.dumps({"event_id": ID, "verdict": "confirmed", "label": ""}).encode(), "label"),
        (json.dumps({"event_id": ID, "verdict": "confirmed", "label": "a\nb"}).encode(), "label"),
        (json.dumps({"event_id": ID, "verdict": "confirmed", "bbox": [0.5, 0, 0.2, 1]}).encode(),
         "bbox"),
        (json.dumps({"event_id": ID, "verdict": "confirmed", "bbox": [0, 0, 1.5, 1]}).encode(),
         "bbox"),
        (json.dumps({"event_id": ID, "verdict": "confirmed", "bbox": [0, 0, True, 1]}).encode(),
         "bbox"),
    ],
)  # fmt: skip
def test_a_malformed_verdict_names_its_field(body: bytes, field: str) -> None:
    with pytest.raises(ReviewError, match=field):
        parse_verdict(body)


def frame_of(clock: FakeClock) -> Frame:
    image = np.zeros((120, 160, 3), np.uint8)
    cv2.rectangle(image, (40, 30), (100, 110), (200, 180, 160), -1)
    return Frame("dock", 0, clock.monotonic(), clock.time(), as_image(image))


def recorded(journal: EventJournal, writer: SnapshotWriter, clock: FakeClock, seq: int) -> Event:
    event = make_event(clock)
    snap = writer.save(frame_of(clock), Detections.empty(), event)
    assert snap is not None
    stored = replace(event, snapshot=snap, seq=seq)
    journal.record(stored)
    clock.advance(1.0)
    return stored


@pytest.mark.parametrize("sealed", [False, True])
def test_verdicts_export_as_coco_and_yolo_with_the_model_of_each_decision(
    tmp_path: Path, sealed: bool
) -> None:
    clock = FakeClock(wall=1_790_000_000.0)
    sealer = Sealer(KEY) if sealed else None
    snapshots = tmp_path / "snapshots"
    writer = SnapshotWriter(snapshots, sealer=sealer)
    with EventJournal(tmp_path / "journal.db", sealer=sealer) as journal:
        confirmed, relabelled, rejected, gone, unreviewed = (
            recorded(journal, writer, clock, seq) for seq in range(1, 6)
        )
        verdicts: list[tuple[Event, dict[str, object]]] = [
            (confirmed, {"verdict": "confirmed"}),
            (relabelled, {"verdict": "confirmed"}),  # changed later: the last one wins
            (relabelled, {"verdict": "relabelled", "label": "cat", "bbox": CORRECTED}),
            (rejected, {"verdict": "rejected"}),
            (gone, {"verdict": "confirmed"}),
        ]
        for seq, (event, change) in enumerate(verdicts, start=10):
            body = json.dumps({"event_id": event.id, **change}).encode()
            journal.record(review_event(parse_verdict(body), event.to_json(), clock).with_seq(seq))
            clock.advance(1.0)
        # retention removed one event's pictures
        for path in (snapshots / Path(gone.snapshot.file).parent).glob(f"{gone.id}*"):  # type: ignore[union-attr]
            path.unlink()
        assert [r.doc["id"] for r in journal.page(pending_review=False, rule="intrusion")][
            -1
        ] == confirmed.id
        if sealed:  # nothing readable on disk without the key
            raw = b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))  # and its WAL
            assert confirmed.id.encode() in raw  # the id column is in clear; the body is not
            assert b'"label":"person"' not in raw
        coco = export_reviews(journal, snapshots, tmp_path / "coco", fmt="coco", sealer=sealer)
        yolo = export_reviews(journal, snapshots, tmp_path / "yolo", fmt="yolo", sealer=sealer)
    assert (coco.images, coco.boxes, list(coco.skipped)) == (3, 2, [gone.id])
    assert (yolo.images, yolo.boxes) == (3, 2)
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["cat", "person"]
    by_file = {i["file_name"]: i for i in doc["images"]}
    assert set(by_file) == {f"images/{e.id}.jpg" for e in (confirmed, relabelled, rejected)}
    boxes = {
        doc["images"][a["image_id"] - 1]["file_name"]: (a["category_id"], a["bbox"])
        for a in doc["annotations"]
    }
    # the original's box in pixels (160x120 frame: bbox 0.1,0.2,0.3,0.4) and the corrected one
    assert boxes[f"images/{confirmed.id}.jpg"] == (2, [16.0, 24.0, 32.0, 24.0])
    assert boxes[f"images/{relabelled.id}.jpg"] == (1, [40.0, 30.0, 40.0, 60.0])
    assert f"images/{rejected.id}.jpg" not in boxes  # a negative example: no box
    for out in ("coco", "yolo"):
        for file in (tmp_path / out / "images").iterdir():
            image = cv2.imread(str(file))  # the clean frame: a JPEG any tool reads, no boxes
            assert image is not None
            assert image.shape == (120, 160, 3)
            assert os.stat(file).st_mode & 0o077 == 0
        manifest = json.loads((tmp_path / out / "manifest.json").read_text())
        assert manifest["models"] == [{"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"}]
        verdict_of = {m["event_id"]: m["verdict"] for m in manifest["images"]}
        assert verdict_of == {
            confirmed.id: "confirmed", relabelled.id: "relabelled", rejected.id: "rejected"
        }  # fmt: skip
        assert unreviewed.id not in verdict_of
        # the reviewed frames are a calibration set for `edge-app models convert --calibration`
        frames = sample_frames([tmp_path / out / "images"], 2, 1, (160, 120))
        assert len(frames.calibration) + len(frames.held_out) == 3
    labels = tmp_path / "yolo" / "labels"
    assert (
        labels / f"{relabelled.id}.txt"
    ).read_text() == "0 0.375000 0.500000 0.250000 0.500000\n"
    assert (labels / f"{rejected.id}.txt").read_text() == ""
    assert (tmp_path / "yolo" / "classes.txt").read_text() == "cat\nperson\n"
    assert 'names:\n  0: "cat"\n  1: "person"' in (tmp_path / "yolo" / "data.yaml").read_text()


def test_review_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"device: {{thing_name: cam-001, data_dir: {data}}}\n"
        "cameras: [{name: dock, source: {type: file, path: " + sys.executable + "}}]\n"
        "uplink: {enabled: false}\n"
    )
    assert main(["review", "export", "-c", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "no journal" in capsys.readouterr().err
    clock = FakeClock(wall=1_790_000_000.0)
    with EventJournal(data / "journal.db") as journal:
        event = recorded(journal, SnapshotWriter(data / "snapshots"), clock, 1)
        body = json.dumps({"event_id": event.id, "verdict": "confirmed"}).encode()
        journal.record(review_event(parse_verdict(body), event.to_json(), clock).with_seq(2))
    argv = ["review", "export", "-c", str(config), "--out", str(tmp_path / "o"), "--format", "yolo"]
    assert main(argv) == 0
    assert "wrote 1 image(s) with 1 box(es)" in capsys.readouterr().out
    assert (tmp_path / "o" / "labels" / f"{event.id}.txt").read_text().startswith("0 ")


def test_the_cloud_consumer_accepts_review_events() -> None:
    """The Lambda checks each event of a batch; a review event must pass like any other."""
    clock = FakeClock(wall=1_790_000_000.0)
    original = make_event(clock).with_seq(1)
    body = json.dumps({"event_id": original.id, "verdict": "relabelled", "label": "dog"})
    review = review_event(parse_verdict(body.encode()), original.to_json(), clock).with_seq(2)
    batch = {
        "schema": "edge-app/events/1",
        "device": DEVICE,
        "batch_id": new_ulid(clock.time()),
        "first_seq": 1,
        "last_seq": 2,
        "events": [original.to_json(), review.to_json()],
        "dropped": {},
    }
    payload = base64.b64encode(json.dumps(batch).encode()).decode()
    decoded = decode_batch(
        {"payload": payload, "content_type": "application/json", "thing": DEVICE}
    )
    assert isinstance(decoded, Batch)
    good, bad = check_events(decoded)
    assert bad == []
    assert [(e["rule"], e.get("review_of")) for e in good] == [
        ("intrusion", None),
        ("review", original.id),
    ]
