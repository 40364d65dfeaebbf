"""systemd integration without a dependency: ``sd_notify`` over ``$NOTIFY_SOCKET``, the
watchdog loop that feeds ``WATCHDOG=1`` only while frames keep flowing through the detector,
and ``TimeoutExtender``, which keeps slow start-up work that is still progressing (the salvage
of a large damaged outbox) from being killed by the unit's ``TimeoutStartSec=``.

With ``Type=notify`` and ``WatchdogSec=`` in the unit, a detector that hangs stops the feeding
and systemd restarts the service (the outbox keeps every committed event across the restart).
"""

from __future__ import annotations

__all__ = ["EXTEND_S", "TimeoutExtender", "Watchdog", "sd_notify", "watchdog_interval_s"]

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

from edge_app.clock import Clock

_log = logging.getLogger(__name__)

EXTEND_S = 30.0
"""Seconds of start timeout one ``EXTEND_TIMEOUT_USEC`` asks for; sent again after a third of
it while the work progresses, so a salvage that hangs is still killed at most this long after
its last progress (once the unit's own ``TimeoutStartSec=`` has passed)."""


def sd_notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` ("READY=1", "WATCHDOG=1", "STOPPING=1") to systemd; False when not run by
    systemd (no ``$NOTIFY_SOCKET``) or the socket is gone. Never raises."""
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
    except OSError as exc:
        _log.warning("sd_notify(%s) failed: %s", state.split("=", maxsplit=1)[0], exc)
        return False
    return True


class TimeoutExtender:
    """The ``progress`` hook of slow start-up work: call it whenever the work moves on.

    The first call, and the first after each third of ``extend_s`` seconds (``clock``'s
    monotonic time), sends ``EXTEND_TIMEOUT_USEC=<extend_s in µs>``: systemd then waits at
    least that long before it counts the start as timed out. Calls in between only read the
    clock, so it may be called once per page read. Not under systemd, ``notify`` (the seam,
    ``sd_notify``) is a no-op. ``sent`` counts the messages sent. One thread at a time.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        extend_s: float = EXTEND_S,
        notify: Callable[[str], bool] = sd_notify,
    ) -> None:
        if not extend_s > 0:
            raise ValueError(f"extend_s must be > 0 seconds, got {extend_s}")
        self._clock = clock
        self._state = f"EXTEND_TIMEOUT_USEC={round(extend_s * 1e6)}"
        self._every = extend_s / 3
        self._notify = notify
        self._next: float | None = None
        self.sent = 0

    def __call__(self) -> None:
        now = self._clock.monotonic()
        if self._next is not None and now < self._next:
            return
        self._next = now + self._every
        self._notify(self._state)
        self.sent += 1


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (systemd's advice), or None when no watchdog is
    asked for (or it is meant for another process, ``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class Watchdog:
    """Thread body: sends READY=1 once ``first_frame()`` is true, then WATCHDOG=1 every
    ``interval_s`` seconds while ``flowing()`` is true. ``notify`` is the seam (``sd_notify``)."""

    def __init__(
        self,
        *,
        first_frame: Callable[[], bool],
        flowing: Callable[[], bool],
        stop: threading.Event,
        interval_s: float | None,
        notify: Callable[[str], bool] = sd_notify,
    ) -> None:
        self._first_frame = first_frame
        self._flowing = flowing
        self._stop = stop
        self._interval = interval_s
        self._notify = notify
        self.ready_sent = False
        self.fed = 0
        self.starved = 0

    def run(self) -> None:
        poll = min(0.2, self._interval or 0.2)
        while not self._stop.is_set() and not self.ready_sent:
            if self._first_frame():
                self._notify("READY=1")
                self.ready_sent = True
            else:
                self._stop.wait(poll)
        if self._interval is None:
            return
        while not self._stop.wait(self._interval):
            if self._flowing():
                self._notify("WATCHDOG=1")
                self.fed += 1
            else:
                if self.starved == 0:
                    _log.error("frames stopped flowing through the detector: watchdog not fed")
                self.starved += 1
