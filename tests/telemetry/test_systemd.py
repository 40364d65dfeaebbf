"""sd_notify over a real unix datagram socket, and the watchdog's feeding rule."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.telemetry import TimeoutExtender, Watchdog, sd_notify, watchdog_interval_s
from tests.outbox_damage import damage, open_box, pages, write_outbox


def test_sd_notify_sends_datagrams(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(64) == b"READY=1"
    assert not sd_notify("READY=1", {})  # not under systemd: a no-op


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "4000000"}) == 2.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None


def test_watchdog_feeds_only_while_frames_flow() -> None:
    sent: list[str] = []
    got = threading.Condition()
    flowing = threading.Event()
    flowing.set()

    def notify(state: str) -> bool:
        with got:
            sent.append(state)
            got.notify_all()
        return True

    stop = threading.Event()
    dog = Watchdog(
        first_frame=lambda: True,
        flowing=flowing.is_set,
        stop=stop,
        interval_s=0.01,
        notify=notify,
    )
    thread = threading.Thread(target=dog.run)
    thread.start()
    try:
        with got:
            assert got.wait_for(lambda: sent.count("WATCHDOG=1") >= 3, timeout=10)
        flowing.clear()
        with got:
            fed = sent.count("WATCHDOG=1")
        assert _wait(lambda: dog.starved >= 3)
        with got:
            # at most one feed was already past its check when the flow stopped
            assert sent.count("WATCHDOG=1") <= fed + 1
    finally:
        stop.set()
        thread.join()
    assert sent[0] == "READY=1"


def _wait(cond: object, timeout: float = 10.0) -> bool:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if cond():  # type: ignore[operator]
                return True
            done.wait(0.01)
        return False
    finally:
        deadline.cancel()


def test_timeout_extender_asks_on_the_first_call_then_each_third_of_the_extension() -> None:
    clock = FakeClock()
    sent: list[str] = []

    def notify(state: str) -> bool:
        sent.append(state)
        return True

    extend = TimeoutExtender(clock, extend_s=30.0, notify=notify)
    extend()
    assert sent == ["EXTEND_TIMEOUT_USEC=30000000"]  # at once: the start may be late already
    for _ in range(99):  # called per page: in between, nothing is sent
        clock.advance(0.099)
        extend()
    assert len(sent) == 1  # 9.8 s later
    clock.advance(0.2)
    extend()
    assert len(sent) == extend.sent == 2
    clock.advance(25.0)  # a pause in the work: the next call asks again at once
    extend()
    assert sent == ["EXTEND_TIMEOUT_USEC=30000000"] * 3


@pytest.mark.slow
def test_a_long_salvage_keeps_extending_the_start_timeout(tmp_path: Path) -> None:
    """A damaged real outbox salvaged by ``Outbox`` on a slow device (each page read takes
    0.5 s on the clock): ``EXTEND_TIMEOUT_USEC`` reaches systemd's socket on the first page and
    then every 10 s of salvage, never in between; a sound outbox sends nothing."""
    db = tmp_path / "outbox.db"
    write_outbox(db)
    damage(db, pages(db, "events", "leaf")[10])
    sock_path = tmp_path / "notify.sock"
    clock = FakeClock()
    pages_read = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(sock_path))
        extend = TimeoutExtender(
            clock, notify=lambda state: sd_notify(state, {"NOTIFY_SOCKET": str(sock_path)})
        )

        def page_read() -> None:
            nonlocal pages_read
            pages_read += 1
            clock.advance(0.5)
            extend()

        with open_box(db, clock, progress=page_read) as box:
            assert box.recovery is not None
        assert pages_read > 60
        assert extend.sent == 1 + (pages_read - 1) // 20  # 20 pages: 10 s
        systemd.settimeout(5)
        received = [systemd.recv(64) for _ in range(extend.sent)]
        systemd.setblocking(False)
        with pytest.raises(BlockingIOError):
            systemd.recv(64)  # nothing more than counted
        assert received == [b"EXTEND_TIMEOUT_USEC=30000000"] * extend.sent
        before = pages_read
        with open_box(db, clock, progress=page_read) as box:  # sound now: no salvage
            assert box.recovery is not None  # still to announce, but nothing was read again
        assert pages_read == before
