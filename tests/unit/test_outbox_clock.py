"""Clock sanity: events recorded before an NTP step are re-timed, and say so."""

from __future__ import annotations

from pathlib import Path

from edge_app.clock import FakeClock
from edge_app.domain import format_utc
from edge_app.outbox import Outbox
from edge_app.uplink import decode_batch, encode_batch
from tests.factories import DEVICE, make_event

YEARS_BEHIND = 1_200_000_000.0  # 2008: the clock of a board without a battery
TRUE_WALL = 1_790_000_000.0


def open_box(path: Path, clock: FakeClock, boot_id: str) -> Outbox:
    return Outbox(
        path, clock=clock, device=DEVICE, max_bytes=2**26, max_age_s=86400.0,
        encoder=encode_batch, boot_id=boot_id,
    )  # fmt: skip


def test_boot_years_behind_then_clock_step_corrects_recorded_times(tmp_path: Path) -> None:
    clock = FakeClock(monotonic=50.0, wall=YEARS_BEHIND)
    with open_box(tmp_path / "o.db", clock, "boot-a") as box:
        for _ in range(3):
            box.enqueue(make_event(clock))
            clock.advance(2.0)  # recorded at mono 50, 52, 54
        clock.set_wall(TRUE_WALL)  # NTP syncs at mono 56
        box.enqueue(make_event(clock))
        batch = box.lease(100, 1 << 20)
        assert batch is not None
        assert box.times_corrected == 3
    events = decode_batch(batch.payload)["events"]
    offset = TRUE_WALL - 56.0
    for event, mono in zip(events[:3], (50.0, 52.0, 54.0), strict=True):
        assert event["time_corrected"] is True
        assert event["ts"] == format_utc(mono + offset)
        assert event["ts_recorded"].startswith("2008-")
    assert "time_corrected" not in events[3]
    assert events[3]["ts"] == format_utc(TRUE_WALL)


def test_events_of_an_earlier_boot_are_left_alone(tmp_path: Path) -> None:
    clock = FakeClock(monotonic=50.0, wall=YEARS_BEHIND)
    with open_box(tmp_path / "o.db", clock, "boot-a") as box:
        box.enqueue(make_event(clock))
    later = FakeClock(monotonic=10.0, wall=TRUE_WALL)  # rebooted, clock already synced
    with open_box(tmp_path / "o.db", later, "boot-b") as box:
        batch = box.lease(100, 1 << 20)
        assert batch is not None
        assert box.times_corrected == 0
    (event,) = decode_batch(batch.payload)["events"]
    assert "time_corrected" not in event
    assert event["ts"].startswith("2008-")  # monotonic time of another boot says nothing


def test_a_correct_clock_changes_nothing(tmp_path: Path) -> None:
    clock = FakeClock(wall=TRUE_WALL)
    with open_box(tmp_path / "o.db", clock, "boot-a") as box:
        for _ in range(5):
            box.enqueue(make_event(clock))
            clock.advance(1.0)
        batch = box.lease(100, 1 << 20)
        assert batch is not None
        assert box.times_corrected == 0
