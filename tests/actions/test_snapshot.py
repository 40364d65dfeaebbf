"""Snapshots: an annotated JPEG per event on the local disk; a failed write never raises."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from edge_app.actions.snapshot import SnapshotWriter, crop_box, draw_detections, sibling
from edge_app.domain import Detections, Event, Frame, Image, ModelRef, Phase, Severity
from edge_app.ids import new_ulid

W, H = 320, 240
WALL = 1_790_000_000.0  # 2026-09-21T14:13:20Z
PERSON_BOX = (0.25, 0.25, 0.75, 0.9)
CAT_BOX = (0.05, 0.05, 0.2, 0.2)
GREEN = (0, 200, 0)
RED = (0, 0, 230)


def gray_image() -> Image:
    return np.full((H, W, 3), 90, np.uint8)


def detections() -> Detections:
    return Detections(
        np.array([CAT_BOX, PERSON_BOX], np.float32),
        np.array([0.6, 0.8], np.float32),
        np.array([15, 0], np.int32),
        ("cat", "person"),
    )


def event(wall: float = WALL, camera: str = "dock") -> Event:
    (x1, y1, x2, y2) = (float(v) for v in np.array(PERSON_BOX, np.float32))
    return Event(
        id=new_ulid(),
        device="edge-1",
        camera=camera,
        rule="intrusion",
        phase=Phase.START,
        severity=Severity.HIGH,
        wall=wall,
        mono=100.0,
        label="person",
        score=0.8,
        bbox=(x1, y1, x2, y2),  # as the rule engine takes it from the float32 Detections
        model=ModelRef("ssd", "0123456789ab"),
    )


def frame(image: Image | None = None) -> Frame:
    return Frame("dock", 7, 100.0, WALL, gray_image() if image is None else image)


def pixel_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return int(x1 * W), int(y1 * H), int(x2 * W), int(y2 * H)


def test_save_writes_a_decodable_jpeg_where_the_contract_says(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "snaps")
    ev = event()
    snapshot = writer.save(frame(), detections(), ev)
    assert snapshot is not None
    assert snapshot.file == f"dock/2026-09-21/{ev.id}.jpg"
    path = tmp_path / "snaps" / snapshot.file
    data = path.read_bytes()
    assert snapshot.bytes == len(data) == path.stat().st_size
    assert snapshot.sha256 == hashlib.sha256(data).hexdigest()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (H, W, 3)
    assert writer.failures == 0
    assert set(snapshot.to_json()) == {"file", "sha256", "bytes"}  # wire keys; siblings by name
    assert sibling(snapshot.file, "clean") == Path(f"dock/2026-09-21/{ev.id}.clean.jpg")
    clean = cv2.imread(str(tmp_path / "snaps" / sibling(snapshot.file, "clean")))
    assert clean is not None
    # the clean one is the frame as seen (no boxes): flat grey up to JPEG's rounding
    assert int(np.abs(clean.astype(int) - frame().image.astype(int)).max()) <= 2
    assert not np.array_equal(image, clean)  # the annotated one has the boxes
    # the three files and no temporary one
    assert sorted(p.name for p in path.parent.iterdir()) == [
        f"{ev.id}.clean.jpg",
        f"{ev.id}.crop.jpg",
        path.name,
    ]


def test_the_snapshot_highlights_the_event_detection(tmp_path: Path) -> None:
    # big enough for 3 px lines, so colours survive JPEG's chroma subsampling
    size = 900
    big = np.full((size, size, 3), 90, np.uint8)
    snapshot = SnapshotWriter(tmp_path).save(
        Frame("dock", 7, 100.0, WALL, big), detections(), event()
    )
    assert snapshot is not None
    image = cv2.imread(str(tmp_path / snapshot.file), cv2.IMREAD_COLOR)
    assert image is not None

    def left_edge_bgr(box: tuple[float, float, float, float]) -> tuple[int, int, int]:
        x, y = int(box[0] * size), int((box[1] + box[3]) / 2 * size)
        b, g, r = (int(v) for v in image[y, x])
        return b, g, r

    _, g, r = left_edge_bgr(PERSON_BOX)
    assert r > g + 60, "the event's own detection should be drawn in red"
    _, g, r = left_edge_bgr(CAT_BOX)
    assert g > r + 60, "other detections should be drawn in green"


def test_the_day_folder_is_the_utc_date_of_the_event(tmp_path: Path) -> None:
    ev = event(wall=1_789_948_799.5)  # 2026-09-20T23:59:59.5Z
    snapshot = SnapshotWriter(tmp_path).save(frame(), detections(), ev)
    assert snapshot is not None
    assert snapshot.file == f"dock/2026-09-20/{ev.id}.jpg"


def test_two_events_make_two_files(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path)
    first = writer.save(frame(), detections(), event())
    second = writer.save(frame(), Detections.empty(), event())
    assert first is not None
    assert second is not None
    assert first.file != second.file
    assert first.sha256 != second.sha256  # one has boxes drawn, the other none
    assert len(list((tmp_path / "dock" / "2026-09-21").iterdir())) == 6  # annotated, clean, crop


def test_unwritable_root_returns_none_and_counts(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file where a directory should be")
    writer = SnapshotWriter(blocker / "x")
    assert writer.save(frame(), detections(), event()) is None
    assert writer.save(frame(), detections(), event()) is None
    assert writer.failures == 2
    assert blocker.read_text() == "a regular file where a directory should be"


def test_draw_detections_does_not_modify_its_input() -> None:
    image = gray_image()
    before = image.copy()
    out = draw_detections(image, detections())
    assert np.array_equal(image, before)
    assert out is not image
    assert not np.array_equal(out, image)


def test_draw_detections_draws_inside_the_box_and_nowhere_far_from_it() -> None:
    out = draw_detections(gray_image(), detections())
    x1, y1, x2, y2 = pixel_box(PERSON_BOX)
    changed = np.any(out != gray_image(), axis=2)
    assert changed[y1 : y2 + 1, x1 : x2 + 1].any()
    assert changed[y1:y2, x1].any()  # the left side of the rectangle
    assert not changed[H - 10 :, : W // 5].any()  # bottom-left corner: no box there
    assert not changed[y1 + 20 : y2 - 20, x1 + 20 : x2 - 20].any()  # the box is not filled


def test_highlighted_detection_is_red_and_the_others_green() -> None:
    out = draw_detections(gray_image(), detections(), highlight=1)
    px1, py1, _, py2 = pixel_box(PERSON_BOX)
    cx1, cy1, _, cy2 = pixel_box(CAT_BOX)
    mid_person, mid_cat = (py1 + py2) // 2, (cy1 + cy2) // 2
    assert tuple(out[mid_person, px1]) == RED
    assert tuple(out[mid_cat, cx1]) == GREEN


def test_no_detections_is_an_unchanged_copy() -> None:
    image = gray_image()
    out = draw_detections(image, Detections.empty())
    assert out is not image
    assert np.array_equal(out, image)


def test_quality_is_passed_to_the_encoder(tmp_path: Path) -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (H, W, 3), np.uint8)
    sizes = []
    for quality in (30, 95):
        snap = SnapshotWriter(tmp_path / str(quality), quality).save(
            frame(noisy), detections(), event()
        )
        assert snap is not None
        sizes.append(snap.bytes)
    assert sizes[0] < sizes[1]


def test_the_crop_is_the_event_object_with_context_cut_from_the_clean_frame(
    tmp_path: Path,
) -> None:
    # a gradient frame, so any offset in the cut shows up in the pixels
    xs = np.tile(np.arange(W, dtype=np.uint8), (H, 1))
    ys = np.tile(np.arange(H, dtype=np.uint8)[:, None], (1, W))
    image = np.dstack([xs, ys, np.full((H, W), 128, np.uint8)])
    ev = event()
    snapshot = SnapshotWriter(tmp_path).save(frame(image), detections(), ev)
    assert snapshot is not None
    assert sibling(snapshot.file, "crop").name == f"{ev.id}.crop.jpg"
    crop = cv2.imread(str(tmp_path / sibling(snapshot.file, "crop")), cv2.IMREAD_COLOR)
    assert crop is not None
    x1, y1, x2, y2 = crop_box(ev.bbox, W, H)
    assert crop.shape == (y2 - y1, x2 - x1, 3)
    expected = image[y1:y2, x1:x2].astype(int)
    assert float(np.abs(crop.astype(int) - expected).mean()) < 3  # JPEG rounding, no boxes
    px1, py1, px2, py2 = pixel_box(PERSON_BOX)
    assert x1 <= px1  # the whole object is in the crop
    assert y1 <= py1
    assert x2 >= px2
    assert y2 >= py2


def test_crop_box_adds_context_keeps_a_minimum_and_stays_in_the_frame() -> None:
    # a 100 x 100 px object in the middle of a 1000 x 1000 frame: a quarter more each side
    assert crop_box((0.45, 0.45, 0.55, 0.55), 1000, 1000) == (425, 425, 575, 575)
    # a 10 px object still gets a 96 px crop centred on it
    assert crop_box((0.5, 0.5, 0.51, 0.51), 1000, 1000) == (457, 457, 553, 553)
    # at the frame's corner the crop is shifted inside, not cut short
    assert crop_box((0.0, 0.0, 0.1, 0.1), 1000, 1000) == (0, 0, 150, 150)
    assert crop_box((0.9, 0.9, 1.0, 1.0), 1000, 1000) == (850, 850, 1000, 1000)
    # an object filling the frame: the crop is the frame
    assert crop_box((0.0, 0.0, 1.0, 1.0), 320, 240) == (0, 0, 320, 240)
