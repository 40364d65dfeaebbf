"""sd_notify over a real unix datagram socket, and the watchdog's feeding rule."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from edge_app.telemetry import Watchdog, sd_notify, watchdog_interval_s


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
