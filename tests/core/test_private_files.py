"""Every file the appliance writes is 0600 in 0700 folders under a permissive umask, and none
is written through a planted symlink: last-good, seq reservation, outbox (db, -wal, -shm),
side lanes, snapshots and clips."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_app.actions.clips import ClipRecorder, ClipWriter
from edge_app.actions.snapshot import SnapshotWriter
from edge_app.clock import FakeClock
from edge_app.config import LastGood, LastGoodStore
from edge_app.domain import Detections, Frame, as_image
from edge_app.outbox import LaneStore, Outbox, SeqReservation
from tests.factories import DEVICE, make_event


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes(root: Path) -> dict[str, int]:
    """{relative path: mode} of everything under ``root``."""
    return {str(p.relative_to(root)): mode(p) for p in sorted(root.rglob("*"))}


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The common default umask, which leaves new files 0644 and folders 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def open_outbox(path: Path, clock: FakeClock) -> Outbox:
    return Outbox(path, clock=clock, device=DEVICE, max_bytes=1 << 26, max_age_s=86400.0)


def test_last_good_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = LastGoodStore(data)
    store.save(LastGood({"detector": {"score_threshold": 0.8}}, 3, "d1"))
    assert modes(tmp_path) == {"data": 0o700, "data/remote-config.json": 0o600}
    loaded = store.load()
    assert loaded is not None
    assert loaded.version == 3


def test_last_good_never_writes_through_a_planted_temp_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("root-owned config\n")
    store = LastGoodStore(tmp_path)
    # the name the old code wrote to before renaming: it followed this link
    (tmp_path / "remote-config.json.tmp").symlink_to(victim)
    store.save(LastGood({"detector": {"score_threshold": 0.8}}, 4, "d2"))
    assert victim.read_text() == "root-owned config\n"
    assert not store.path.is_symlink()
    loaded = store.load()
    assert loaded is not None
    assert loaded.version == 4


def test_last_good_planted_as_a_symlink_is_not_read(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"version": 9, "digest": "x", "desired": {}}')
    data = tmp_path / "data"
    data.mkdir()
    store = LastGoodStore(data)
    store.path.symlink_to(elsewhere)
    assert store.load() is None  # ignored with a warning: the local file alone is used
    store.save(LastGood({}, 10, "d3"))  # replaces the link itself
    assert elsewhere.read_text() == '{"version": 9, "digest": "x", "desired": {}}'
    loaded = store.load()
    assert loaded is not None
    assert loaded.version == 10


def test_seq_reservation_is_0600_and_never_written_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "outbox.db.seq.tmp").symlink_to(victim)
    seqs = SeqReservation(tmp_path / "outbox.db.seq", block=10)
    seqs.ensure(1)
    assert victim.read_text() == "keep\n"
    assert mode(tmp_path / "outbox.db.seq") == 0o600
    assert SeqReservation(tmp_path / "outbox.db.seq").reserved == 11


def test_outbox_db_wal_shm_and_seq_are_0600_while_open(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_outbox(tmp_path / "data" / "outbox.db", clock) as box:
        box.enqueue(make_event(clock))
        with LaneStore(box.path, "snapshots") as lane:
            lane.add([(clock.time(), '{"event_id": "x", "file": "a.jpg"}')])
            seen = modes(tmp_path)
    assert seen == {
        "data": 0o700,
        "data/outbox.db": 0o600,
        "data/outbox.db-shm": 0o600,
        "data/outbox.db-wal": 0o600,
        "data/outbox.db.seq": 0o600,
    }


def test_a_lane_opened_first_creates_a_0600_database(tmp_path: Path) -> None:
    with LaneStore(tmp_path / "new" / "outbox.db", "metrics") as lane:
        lane.add([(1.0, "{}")])
        assert {k: v for k, v in modes(tmp_path).items() if "outbox" in k} == {
            "new/outbox.db": 0o600,
            "new/outbox.db-shm": 0o600,
            "new/outbox.db-wal": 0o600,
        }
    assert mode(tmp_path / "new") == 0o700


def test_an_outbox_left_0644_by_an_older_version_is_tightened_at_open(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    clock = FakeClock()
    with open_outbox(db, clock) as box:
        box.enqueue(make_event(clock))
    # what an older version left: a world-readable database, and a -wal of a crash
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    conn.commit()
    wal = db.with_name("outbox.db-wal")
    db.chmod(0o644)
    wal.chmod(0o644)
    with open_outbox(db, clock) as box:
        assert box.stats().depth == 1
        assert mode(db) == 0o600
        assert mode(wal) == 0o600
    conn.close()


def test_snapshots_are_0600_in_0700_folders(tmp_path: Path) -> None:
    clock = FakeClock()
    image = np.full((120, 160, 3), 90, np.uint8)
    frame = Frame("dock", 1, clock.monotonic(), clock.time(), as_image(image))
    event = make_event(clock)
    snap = SnapshotWriter(tmp_path / "snapshots").save(frame, Detections.empty(), event)
    assert snap is not None
    seen = modes(tmp_path)
    folders = {k: v for k, v in seen.items() if not k.endswith(".jpg")}
    files = {k: v for k, v in seen.items() if k.endswith(".jpg")}
    assert set(folders.values()) == {0o700}
    assert len(folders) == 3  # snapshots/, dock/, the day
    assert len(files) == 3  # annotated, clean, crop; no temp file left
    assert set(files.values()) == {0o600}


def test_clips_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    writer = ClipWriter()
    try:
        recorder = ClipRecorder(tmp_path / "clips" / "dock", writer, pre_s=0.5, post_s=0.5)
        image = as_image(np.full((120, 160, 3), 90, np.uint8))
        clip = None
        for i in range(10):
            recorder.push(Frame("dock", i, 100.0 + i / 5, 1e9 + i / 5, image))
            if i == 3:
                clip = recorder.begin("event.mp4", 100.0 + i / 5)
        assert clip is not None
        assert clip.done.wait(10)
    finally:
        writer.close()
    assert writer.written == 1
    assert modes(tmp_path) == {"clips": 0o700, "clips/dock": 0o700, "clips/dock/event.mp4": 0o600}
