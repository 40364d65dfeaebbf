"""Clock sanity: events recorded before an NTP step are re-timed, and say so."""

from __future__ import annotations

import sys
from pathlib import Path

from edge_app.clock import FakeClock, SystemClock, os_clock_synchronized
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


def test_os_sync_flag_corrects_an_offset_too_small_to_look_like_a_step(tmp_path: Path) -> None:
    """A restored clock 10 s fast is plausible and no NTP step is large enough to notice;
    when the OS raises its synchronised flag, what was recorded under it is corrected."""
    clock = FakeClock(monotonic=50.0, wall=TRUE_WALL + 10.0)
    clock.set_synchronized(False)
    with open_box(tmp_path / "o.db", clock, "boot-a") as box:
        box.enqueue(make_event(clock))
        clock.advance(5.0)
        clock.set_wall(TRUE_WALL + 5.0)  # slewed/stepped by 10 s: under CLOCK_STEP_S
        box.enqueue(make_event(clock))
        assert box.times_corrected == 0  # no flag yet: 10 s is not evidence enough
        clock.set_synchronized(True)
        clock.advance(1.0)
        box.enqueue(make_event(clock))
        batch = box.lease(100, 1 << 20)
        assert batch is not None
        assert box.times_corrected == 1
    first, second, third = decode_batch(batch.payload)["events"]
    assert first["time_corrected"] is True
    assert first["ts"] == format_utc(TRUE_WALL)  # recorded at mono 50 = true wall
    assert "time_corrected" not in second
    assert "time_corrected" not in third


def test_the_system_clock_reads_the_kernel_flag() -> None:
    synced = SystemClock().synchronized()
    if sys.platform == "linux":
        assert synced is os_clock_synchronized()
        assert isinstance(synced, bool)  # adjtimex answers on every Linux
    else:
        assert synced is None
