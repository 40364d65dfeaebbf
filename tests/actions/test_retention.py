"""Local retention of snapshots and clips: by age, then by total size, oldest first, an
event's files together, never an event still pending, never a file being written."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import pytest

from edge_app.actions import GRACE_S, Retention, prune_clips, prune_snapshots
from edge_app.clock import FakeClock
from edge_app.errors import OutboxError
from edge_app.outbox import LaneStore, Outbox
from edge_app.uplink import SnapshotSender, encode_batch, snapshot_row
from tests.factories import DEVICE, make_event, wait_until

NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
DAY = "2026-09-21"
HOUR = 3600.0


def put(path: Path, size: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def snapshot(
    root: Path, event_id: str, age_s: float, size: int = 100, day: str = DAY, suffix: str = ""
) -> None:
    """An event's three files, ``3 * size`` bytes, last modified ``age_s`` ago; ``suffix``
    ``.enc``: stored encrypted (``<name>.enc``, what ``SnapshotWriter`` writes with a key)."""
    folder = root / "dock" / day
    for name in (f"{event_id}.jpg", f"{event_id}.clean.jpg", f"{event_id}.crop.jpg"):
        put(folder / (name + suffix), size, age_s)


def backdate(root: Path, seconds: float) -> None:
    """Make every file under ``root`` ``seconds`` old by the system clock (what ``Retention``
    compares with)."""
    then = time.time() - seconds
    for path in root.rglob("*"):
        os.utime(path, (then, then), follow_symlinks=False)


def names(root: Path) -> set[str]:
    return {p.name.split(".", 1)[0] for p in root.rglob("*") if p.is_file()}


def nothing_pending(ids: Sequence[str]) -> Collection[str]:
    return ()


def test_clips_go_by_age_then_oldest_first_by_size(tmp_path: Path) -> None:
    for n, (age, size) in enumerate([(500, 100), (300, 100), (200, 100), (100, 100)]):
        put(tmp_path / f"c{n}.mp4", size, age)
    put(tmp_path / "keep.txt", 1000, 10_000)
    # c0 is too old; then 300 bytes remain over a 250-byte budget: c1 (oldest) goes too
    result = prune_clips(tmp_path, max_bytes=250, max_age_s=400, now=NOW)
    assert (result.deleted, result.freed, result.bytes) == (2, 200, 200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.mp4", "c3.mp4", "keep.txt"]


@pytest.mark.parametrize(
    "forms",
    [(".mp4.enc",) * 4, (".mp4", ".mp4.enc", ".mp4", ".mp4.enc")],
    ids=["encrypted", "mixed"],
)
def test_encrypted_clips_go_by_age_and_size_like_clear_ones(
    tmp_path: Path, forms: tuple[str, ...]
) -> None:
    for n, (age, suffix) in enumerate(zip([500, 300, 200, 100], forms, strict=True)):
        put(tmp_path / f"c{n}{suffix}", 100, age)
    put(tmp_path / "keep.txt", 1000, 10_000)
    result = prune_clips(tmp_path, max_bytes=250, max_age_s=400, now=NOW)
    # the same as clear clips: c0 by age, then c1 (oldest) for the budget; the .enc bytes count
    assert (result.deleted, result.freed, result.bytes) == (2, 200, 200)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"c2{forms[2]}",
        f"c3{forms[3]}",
        "keep.txt",
    ]


def test_an_event_with_a_clear_and_an_encrypted_clip_is_one_clip(tmp_path: Path) -> None:
    put(tmp_path / "E1.mp4", 100, 500)  # written before encryption was turned on
    put(tmp_path / "E1.mp4.enc", 100, 500)
    put(tmp_path / "E2.mp4.enc", 100, 100)
    result = prune_clips(tmp_path, max_bytes=10**6, max_age_s=400, now=NOW)
    assert (result.deleted, result.freed) == (1, 200)
    assert [p.name for p in tmp_path.iterdir()] == ["E2.mp4.enc"]


@pytest.mark.parametrize("mixed", [False, True], ids=["encrypted", "mixed"])
def test_encrypted_snapshots_go_together_and_stay_while_pending(
    tmp_path: Path, mixed: bool
) -> None:
    for n in range(4):
        clear = mixed and n % 2 == 1
        snapshot(tmp_path, f"E{n}", (10 - n) * HOUR, suffix="" if clear else ".enc")
    asked: list[list[str]] = []

    def pending(ids: Sequence[str]) -> Collection[str]:
        asked.append(list(ids))
        return {"E0", "E2"}  # encrypted, and not delivered yet

    result = prune_snapshots(tmp_path, max_bytes=0, max_age_s=HOUR, pending=pending, now=NOW)
    assert asked == [["E0", "E1", "E2", "E3"]]  # asked by event id, whatever the file form
    assert names(tmp_path) == {"E0", "E2"}
    assert sorted(p.name for p in tmp_path.rglob("*")  if p.is_file()) == [
        "E0.clean.jpg.enc", "E0.crop.jpg.enc", "E0.jpg.enc",
        "E2.clean.jpg.enc", "E2.crop.jpg.enc", "E2.jpg.enc",
    ]  # fmt: skip
    assert (result.deleted, result.kept, result.freed, result.bytes) == (2, 2, 600, 600)


def test_an_events_files_go_together_oldest_first_until_within_budget(tmp_path: Path) -> None:
    for n, age in enumerate([5 * HOUR, 4 * HOUR, 3 * HOUR, 2 * HOUR]):
        snapshot(tmp_path, f"E{n}", age)
    result = prune_snapshots(
        tmp_path, max_bytes=700, max_age_s=100 * HOUR, pending=nothing_pending, now=NOW
    )
    # 1200 bytes over a 700-byte budget: the two oldest events (300 bytes each) go
    assert (result.deleted, result.freed, result.bytes, result.kept) == (2, 600, 600, 0)
    assert names(tmp_path) == {"E2", "E3"}
    assert len(list(tmp_path.rglob("*.jpg"))) == 6  # no sibling left behind


def test_old_snapshots_go_by_age_even_within_budget(tmp_path: Path) -> None:
    snapshot(tmp_path, "OLD", 73 * HOUR)
    snapshot(tmp_path, "NEW", 71 * HOUR)
    result = prune_snapshots(
        tmp_path, max_bytes=10**9, max_age_s=72 * HOUR, pending=nothing_pending, now=NOW
    )
    assert result.deleted == 1
    assert names(tmp_path) == {"NEW"}


def test_pending_events_keep_their_files_even_over_budget(tmp_path: Path) -> None:
    for n in range(4):
        snapshot(tmp_path, f"E{n}", (10 - n) * HOUR)
    asked: list[list[str]] = []

    def pending(ids: Sequence[str]) -> Collection[str]:
        asked.append(list(ids))
        return {"E0", "E2"}  # still in the outbox, or queued for upload

    result = prune_snapshots(tmp_path, max_bytes=0, max_age_s=HOUR, pending=pending, now=NOW)
    assert names(tmp_path) == {"E0", "E2"}
    assert (result.deleted, result.kept, result.bytes) == (2, 2, 600)
    assert asked == [["E0", "E1", "E2", "E3"]]  # one question for the whole run


def test_nothing_is_asked_or_deleted_within_budget(tmp_path: Path) -> None:
    snapshot(tmp_path, "E0", HOUR)

    def pending(ids: Sequence[str]) -> Collection[str]:
        raise AssertionError("no file was due: the outbox need not be asked")

    result = prune_snapshots(
        tmp_path, max_bytes=10**6, max_age_s=2 * HOUR, pending=pending, now=NOW
    )
    assert (result.deleted, result.bytes) == (0, 300)


def test_files_just_written_are_never_deleted(tmp_path: Path) -> None:
    snapshot(tmp_path, "FRESH", GRACE_S / 2)  # its event may be being stored right now
    snapshot(tmp_path, "OLDER", GRACE_S * 2)
    result = prune_snapshots(tmp_path, max_bytes=0, max_age_s=1.0, pending=nothing_pending, now=NOW)
    assert names(tmp_path) == {"FRESH"}
    assert result.deleted == 1


def test_stale_temp_files_are_removed_and_fresh_ones_left(tmp_path: Path) -> None:
    folder = tmp_path / "dock" / DAY
    stale = put(folder / ".E1.clean.0a1b2c.tmp.jpg", 100, 2 * GRACE_S)  # a crash's leftover
    fresh = put(folder / ".E2.0a1b2d.tmp.jpg", 100, 1.0)  # being written
    prune_snapshots(tmp_path, max_bytes=10**6, max_age_s=HOUR, pending=nothing_pending, now=NOW)
    assert not stale.exists()
    assert fresh.exists()


def test_empty_day_folders_go_once_before_yesterday(tmp_path: Path) -> None:
    snapshot(tmp_path, "A", 80 * HOUR, day="2026-09-18")
    snapshot(tmp_path, "B", 30 * HOUR, day="2026-09-20")
    (tmp_path / "dock" / DAY).mkdir()  # today's, empty: the writer may be about to use it
    prune_snapshots(tmp_path, max_bytes=0, max_age_s=HOUR, pending=nothing_pending, now=NOW)
    assert sorted(p.name for p in (tmp_path / "dock").iterdir()) == ["2026-09-20", DAY]


def test_symlinks_are_neither_followed_nor_deleted(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    put(outside / "precious.jpg", 100, 100 * HOUR)
    root = tmp_path / "snapshots"
    (root / "dock").mkdir(parents=True)
    (root / "dock" / "2026-09-01").symlink_to(outside)  # a folder link
    put(root / "dock" / DAY / "E1.jpg", 100, 100 * HOUR)
    (root / "dock" / DAY / "E2.jpg").symlink_to(outside / "precious.jpg")
    prune_snapshots(root, max_bytes=0, max_age_s=HOUR, pending=nothing_pending, now=NOW)
    assert (outside / "precious.jpg").read_bytes() == b"x" * 100
    assert (root / "dock" / DAY / "E2.jpg").is_symlink()
    assert not (root / "dock" / DAY / "E1.jpg").exists()


def test_pending_is_asked_in_chunks_and_a_failure_deletes_no_more(tmp_path: Path) -> None:
    for n in range(600):
        put(tmp_path / "dock" / DAY / f"E{n:04d}.jpg", 10, HOUR + (600 - n))  # E0000 oldest
    calls: list[int] = []

    def pending(ids: Sequence[str]) -> Collection[str]:
        calls.append(len(ids))
        if len(calls) == 2:
            raise OutboxError("outbox closed")
        return ()

    with pytest.raises(OutboxError):
        prune_snapshots(tmp_path, max_bytes=0, max_age_s=1.0, pending=pending, now=NOW)
    assert calls == [256, 256]
    assert len(names(tmp_path)) == 600 - 256  # only the first chunk, which was cleared


def test_outbox_holding_names_undelivered_events_only(tmp_path: Path) -> None:
    clock = FakeClock()
    with Outbox(
        tmp_path / "outbox.db", clock=clock, device=DEVICE, max_bytes=1 << 26,
        max_age_s=86400.0, encoder=encode_batch,
    ) as box:  # fmt: skip
        sent, waiting = box.enqueue(make_event(clock)), box.enqueue(make_event(clock))
        batch = box.lease(1, 1 << 20)
        assert batch is not None
        box.ack(batch)  # ``sent`` was delivered
        leased = box.enqueue(make_event(clock))
        assert box.holding([sent.id, waiting.id, leased.id, "unknown"]) == {waiting.id, leased.id}
        parked = box.lease(10, 1 << 20)
        assert parked is not None
        box.dead_letter(parked, "too large")  # never sendable, kept in the file
        assert box.holding([waiting.id, leased.id]) == {waiting.id, leased.id}
        assert box.holding([]) == set()


def test_snapshot_sender_names_queued_rows_until_delivered(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    with LaneStore(tmp_path / "outbox.db", "snapshots") as lane:
        for event_id in ("E1", "E2"):
            put(root / "dock" / DAY / f"{event_id}.jpg", 100, 0)
            lane.add([(NOW, snapshot_row(event_id, f"dock/{DAY}/{event_id}.jpg", 100))])
        lane.add([(NOW, "not json")])  # protects nothing
        sender = SnapshotSender(lane, root, topic_prefix="edge-app/cam")
        assert sender.queued_ids() == {"E1", "E2"}
        publish = sender.next_publish()  # E1's
        assert publish is not None
        assert sender.queued_ids() == {"E1", "E2"}  # out, not acknowledged: still queued
        sender.delivered(publish)
        assert sender.queued_ids() == {"E2"}


def test_the_loop_passes_at_start_then_stops_promptly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snaps, clips = tmp_path / "snapshots", tmp_path / "clips"
    snapshot(snaps, "E1", 0)
    put(clips / "C1.mp4", 100, 0)
    backdate(tmp_path, 10 * HOUR)
    stop = threading.Event()
    retention = Retention(
        snaps,
        max_bytes=10**9,
        max_age_s=HOUR,
        pending=set,  # every event still pending: its files stay
        clips=[(clips, 10**9, HOUR)],
        every_s=3600.0,
        stop=stop,
    )
    caplog.set_level(logging.INFO, logger="edge_app.actions.retention")
    thread = threading.Thread(target=retention.run)
    thread.start()
    try:
        assert wait_until(lambda: retention.passes == 1)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()  # did not sleep out its hour
    assert retention.passes == 1
    assert retention.last is not None
    assert retention.last.kept == 1
    assert names(snaps) == {"E1"}
    assert not (clips / "C1.mp4").exists()  # clips have no pending check
    assert "deleted 1 clip(s)" in caplog.text


def test_a_pass_whose_outbox_fails_logs_and_keeps_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot(tmp_path, "E1", 0)
    backdate(tmp_path, 10 * HOUR)

    def pending(ids: Sequence[str]) -> Collection[str]:
        raise OutboxError("outbox /x is closed: open a new Outbox")

    retention = Retention(
        tmp_path, max_bytes=0, max_age_s=HOUR, pending=pending, every_s=1.0,
        stop=threading.Event(),
    )  # fmt: skip
    retention.run_once()
    assert names(tmp_path) == {"E1"}
    assert retention.passes == 1
    assert "snapshot retention skipped this pass: outbox /x is closed" in caplog.text
