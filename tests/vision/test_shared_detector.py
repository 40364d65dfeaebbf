"""Sharing one detector: FIFO turns (FairLock) and per-camera counting of late frames."""

from __future__ import annotations

import threading

import pytest

from edge_app.clock import FakeClock
from edge_app.config import parse_config
from edge_app.domain import Event
from edge_app.vision.fairlock import FairLock
from tests.fakes import FakeDetector, ListSource, camera_loop


def _queued(lock: FairLock, tickets: int) -> None:
    """Wait (bounded) until ``tickets`` tickets have been handed out."""
    for _ in range(500):
        with lock._guard:
            if lock._next_ticket >= tickets:
                return
        threading.Event().wait(0.01)
    raise AssertionError(f"only {lock._next_ticket} of {tickets} callers queued")


def test_fair_lock_serves_callers_in_arrival_order() -> None:
    lock = FairLock()
    order: list[str] = []
    lock.acquire()  # the main thread holds the detector

    def camera(name: str) -> None:
        with lock:
            order.append(name)

    threads = []
    for n, name in enumerate(["a", "b", "c", "d"]):
        t = threading.Thread(target=camera, args=(name,), name=f"camera-{name}")
        t.start()
        threads.append(t)
        _queued(lock, n + 2)  # each queues behind the previous one
    lock.release()
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "c", "d"]
    assert set(lock.waits) >= {"camera-a", "camera-d"}


def test_fair_lock_refuses_a_release_it_does_not_hold_and_can_be_taken_again() -> None:
    lock = FairLock()
    for _ in range(3):  # uncontended: taken and freed without any waiter
        with lock:
            assert lock._held
    assert not lock._held
    assert lock._next_ticket == 3
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()


def test_late_frames_are_dropped_and_counted_per_camera() -> None:
    clock = FakeClock(monotonic=100.0)
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [{"name": "yard", "source": {"type": "usb"}, "max_lag_s": 0.5}],
            "rules": [{"name": "person", "labels": ["person"]}],
        }
    )
    detector = FakeDetector()

    def before(i: int) -> None:
        # frame i is stamped 100 + i / 10; from frame 10 on the loop is 1 s behind
        clock.advance((100.0 + i / 10 + (1.0 if i >= 10 else 0.0)) - clock.monotonic())

    def sink(event: Event) -> Event:
        return event

    worker = camera_loop(cfg, ListSource.blank(30, before), detector, sink, clock=clock)
    worker.run()
    assert worker.stats.dropped_late == 20
    assert detector.calls == 10
    assert worker.stats.frames == 30


class SlowTurn:
    """A detector lock whose turn comes ``wait_s`` of fake time after asking (a busy detector)."""

    def __init__(self, clock: FakeClock, wait_s: float) -> None:
        self._clock, self.wait_s = clock, wait_s

    def __enter__(self) -> SlowTurn:
        self._clock.advance(self.wait_s)
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_frame_that_became_late_waiting_for_its_turn_is_dropped_not_detected() -> None:
    clock = FakeClock(monotonic=100.0)
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-1"},
            "uplink": {"enabled": False},
            "cameras": [{"name": "yard", "source": {"type": "usb"}, "max_lag_s": 0.5}],
            "rules": [{"name": "person", "labels": ["person"]}],
        }
    )
    detector = FakeDetector()
    turn = SlowTurn(clock, 0.0)

    def before(i: int) -> None:
        # every frame arrives on time (its stamp, or just after the previous frame's turn);
        # frame 10 alone waits 0.55 s for the detector: past max_lag_s once its turn comes
        turn.wait_s = 0.55 if i == 10 else 0.0
        clock.advance(max(0.0, (100.0 + i / 10) - clock.monotonic()))

    worker = camera_loop(cfg, ListSource.blank(30, before), detector, clock=clock, lock=turn)
    worker.run()
    assert worker.stats.dropped_late == 1  # frame 10, and only it: frame 11 is 0.45 s old
    assert detector.calls == 29
    assert worker.stats.processed == 29
