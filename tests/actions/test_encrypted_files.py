"""Encrypted snapshot and clip files: written sealed (<name>.enc), published and read back clear."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.actions import prune_clips
from edge_app.actions.clips import ClipRecorder, ClipWriter
from edge_app.actions.snapshot import SnapshotWriter, sibling
from edge_app.atrest import Sealer, read_stored
from edge_app.clock import FakeClock
from edge_app.outbox import LaneStore, Outbox
from edge_app.uplink import (
    Backoff,
    DrainLoop,
    InMemoryTransport,
    SnapshotSender,
    encode_batch,
    snapshot_row,
)
from tests.actions.test_clips import assert_frames, frame, read_back
from tests.actions.test_snapshot import detections, event
from tests.actions.test_snapshot import frame as snapshot_frame
from tests.factories import DEVICE, flush_until, make_event

KEY = bytes(range(32))
PREFIX = "edge-app/cam-001"


def test_snapshots_are_written_sealed_and_read_back_clear(tmp_path: Path) -> None:
    root = tmp_path / "snaps"
    ev = event()
    snapshot = SnapshotWriter(root, sealer=Sealer(KEY)).save(snapshot_frame(), detections(), ev)
    assert snapshot is not None
    assert snapshot.file == f"dock/2026-09-21/{ev.id}.jpg"  # the event names the clear file
    folder = root / "dock" / "2026-09-21"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{ev.id}.clean.jpg.enc",
        f"{ev.id}.crop.jpg.enc",
        f"{ev.id}.jpg.enc",
    ]  # no clear JPEG, no temporary file
    for path in folder.iterdir():
        assert path.read_bytes()[:4] == b"EAS1"
    jpeg = read_stored(root / snapshot.file, Sealer(KEY))
    assert hashlib.sha256(jpeg).hexdigest() == snapshot.sha256  # of the clear JPEG
    assert len(jpeg) == snapshot.bytes
    clean = read_stored(root / sibling(snapshot.file, "clean"), Sealer(KEY))
    image = cv2.imdecode(np.frombuffer(clean, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == snapshot_frame().image.shape


def test_snapshot_lane_publishes_clear_jpegs_of_sealed_and_older_plain_files(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    root = tmp_path / "snapshots"
    db = tmp_path / "outbox.db"
    sealer = Sealer(KEY)
    transport = InMemoryTransport()
    transport.connect()
    with (
        Outbox(
            db, clock=clock, device=DEVICE, max_bytes=2**26, max_age_s=86400.0,
            encoder=encode_batch, sealer=sealer,
        ) as outbox,
        LaneStore(db, "snapshots", max_rows=100) as lane,
    ):  # fmt: skip
        clear: dict[str, bytes] = {}
        for i, writer in enumerate((SnapshotWriter(root), SnapshotWriter(root, sealer=sealer))):
            ev = event(camera=f"cam{i}")
            snap = writer.save(snapshot_frame(), detections(), ev)
            assert snap is not None
            stored = outbox.enqueue(make_event(clock))
            lane.add([(stored.wall, snapshot_row(ev.id, snap.file, snap.bytes))])
            clear[ev.id] = read_stored(root / snap.file, sealer)
        assert len(list(root.glob("cam0/*/*.jpg"))) == 3  # written before encryption: plain
        assert len(list(root.glob("cam1/*/*.jpg.enc"))) == 3
        sender = SnapshotSender(lane, root, topic_prefix=PREFIX, sealer=sealer)
        drain = DrainLoop(
            outbox, transport, topic=f"{PREFIX}/events", clock=clock, stop=threading.Event(),
            max_wait_s=0.0, retry=Backoff(1.0, 5.0, random.Random(0)), lanes=[sender],
        )  # fmt: skip
        # flush returns once the events are out: drive it on until the snapshots are acknowledged
        assert flush_until(drain, lambda: lane.stats().rows == 0)
        published = {
            m.topic.rsplit("/", 1)[1]: m.payload
            for m in transport.published
            if "/snapshots/" in m.topic
        }
        assert published == clear
        assert all(payload[:2] == b"\xff\xd8" for payload in published.values())
        assert sender.unreadable == 0


def test_snapshot_lane_skips_what_it_cannot_decrypt_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    writer = SnapshotWriter(root, sealer=Sealer(KEY))
    with LaneStore(tmp_path / "outbox.db", "snapshots", max_rows=100) as lane:
        ev = event()
        snap = writer.save(snapshot_frame(), detections(), ev)
        assert snap is not None
        lane.add([(0.0, snapshot_row(ev.id, snap.file, snap.bytes))])
        keyless = SnapshotSender(lane, root, topic_prefix=PREFIX)
        assert keyless.next_publish() is None  # encrypted, and no key: skipped, not sent
        assert keyless.unreadable == 1
        assert lane.stats().rows == 0
        # A sealed file renamed over another event's name does not decrypt as that event's.
        other = event()
        other_snap = writer.save(snapshot_frame(), detections(), other)
        assert other_snap is not None
        sealed = root / f"{snap.file}.enc"
        sealed.replace(root / f"{other_snap.file}.enc")
        lane.add([(0.0, snapshot_row(other.id, other_snap.file, other_snap.bytes))])
        keyed = SnapshotSender(lane, root, topic_prefix=PREFIX, sealer=Sealer(KEY))
        assert keyed.next_publish() is None
        assert keyed.unreadable == 1
        assert keyed.missing_files == 0


def test_clips_are_stored_sealed_and_the_clear_file_is_gone(tmp_path: Path) -> None:
    scratch = tmp_path / "ram"
    scratch.mkdir()
    folder = tmp_path / "clips"
    writer = ClipWriter(sealer=Sealer(KEY), scratch=scratch)
    try:
        recorder = ClipRecorder(folder, writer, pre_s=1.0, post_s=1.0, fps=5.0)
        clip = None
        for i in range(60):
            recorder.push(frame(i))
            if i == 30:
                clip = recorder.begin("event.mp4", 100.0 + i / 10)
        assert clip is not None
        assert clip.done.wait(10)
    finally:
        writer.close()
    assert writer.written == 1
    assert [p.name for p in folder.iterdir()] == ["event.mp4.enc"]
    assert list(scratch.iterdir()) == []  # the clear temporary file was deleted
    sealed = folder / "event.mp4.enc"
    assert sealed.read_bytes()[:4] == b"EAS1"
    clear = tmp_path / "check.mp4"
    clear.write_bytes(read_stored(folder / "event.mp4", Sealer(KEY)))
    assert_frames(read_back(clear), list(range(20, 41, 2)))
    os.utime(sealed, (1.0, 1.0))  # retention counts encrypted clips too
    assert prune_clips(folder, max_bytes=1 << 30, max_age_s=3600.0).deleted == 1
    assert list(folder.iterdir()) == []


def record_one(folder: Path, writer: ClipWriter) -> None:
    """One clip ``event.mp4`` into ``folder``, written by ``writer`` (closed here)."""
    try:
        recorder = ClipRecorder(folder, writer, pre_s=1.0, post_s=1.0, fps=5.0)
        clip = None
        for i in range(40):
            recorder.push(frame(i))
            if i == 20:
                clip = recorder.begin("event.mp4", 100.0 + i / 10)
        assert clip is not None
        assert clip.done.wait(10)
    finally:
        writer.close()
    assert (writer.written, writer.failed) == (1, 0)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("in_ram", [False, True], ids=["scratch-in-folder", "scratch-in-ram"])
def test_sealed_files_are_private_whatever_the_umask(tmp_path: Path, in_ram: bool) -> None:
    scratch = tmp_path / "ram"
    scratch.mkdir()
    old = os.umask(0o022)
    try:
        snaps = tmp_path / "data" / "snapshots"
        snap = SnapshotWriter(snaps, sealer=Sealer(KEY)).save(
            snapshot_frame(), detections(), event()
        )
        clips = tmp_path / "data" / "clips" / "dock"
        record_one(clips, ClipWriter(sealer=Sealer(KEY), scratch=scratch if in_ram else None))
    finally:
        os.umask(old)
    assert snap is not None
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files if p.parent == clips) == ["event.mp4.enc"]
    assert len(files) == 4  # three sealed JPEGs, one sealed clip: no temp or scratch file left
    assert {oct(mode(p)) for p in files} == {"0o600"}
    folders = [snaps, snaps / "dock", snaps / "dock" / "2026-09-21", clips.parent, clips]
    assert {oct(mode(p)) for p in folders} == {"0o700"}
    assert list(scratch.iterdir()) == []


def test_sealed_files_never_write_through_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    clips = tmp_path / "clips"
    clips.mkdir()
    # at the final name, and at the fixed temporary name an earlier version wrote through
    for name in ("event.mp4.enc", "event.mp4.enc.tmp"):
        (clips / name).symlink_to(outside)
    ev = event()
    snaps = tmp_path / "snapshots"
    day = snaps / "dock" / "2026-09-21"
    day.mkdir(parents=True)
    (day / f"{ev.id}.jpg.enc").symlink_to(outside)
    record_one(clips, ClipWriter(sealer=Sealer(KEY)))
    snap = SnapshotWriter(snaps, sealer=Sealer(KEY)).save(snapshot_frame(), detections(), ev)
    assert snap is not None
    assert outside.read_bytes() == b"precious"
    for sealed in (clips / "event.mp4.enc", day / f"{ev.id}.jpg.enc"):
        assert not sealed.is_symlink()  # the link was replaced, not followed
        assert sealed.read_bytes()[:4] == b"EAS1"
    assert read_stored(snaps / snap.file, Sealer(KEY))[:2] == b"\xff\xd8"
