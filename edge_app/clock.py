"""Time as an input: the ``Clock`` protocol, the system clock and a ``FakeClock`` for tests."""

from __future__ import annotations

__all__ = ["Clock", "FakeClock", "SystemClock", "os_clock_synchronized"]

import ctypes
import ctypes.util
import sys
import threading
import time
from typing import Protocol

# adjtimex(2) returns TIME_ERROR while the kernel's STA_UNSYNC flag is set: no time service
# (chrony, systemd-timesyncd, ntpd) has disciplined the clock since boot.
_TIME_ERROR = 5
_TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; zeroed, so modes = 0 (read only)
_adjtimex = None
if sys.platform == "linux":
    _libc_name = ctypes.util.find_library("c")
    if _libc_name:
        _adjtimex = getattr(ctypes.CDLL(_libc_name, use_errno=True), "adjtimex", None)


def os_clock_synchronized() -> bool | None:
    """The kernel's word on the wall clock: True once a time service has synchronised it, False
    while it has not (just after boot on a board without a clock battery), None where the
    platform cannot say. A read-only ``adjtimex`` call: needs no privilege, costs about a
    microsecond (docs/benchmarks.md)."""
    if _adjtimex is None:
        return None
    state = _adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


class Clock(Protocol):
    """Monotonic seconds for ordering and intervals; wall seconds (Unix epoch, UTC) for stamps."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def synchronized(self) -> bool | None:
        """Whether the wall clock is known to be synchronised (None: cannot tell)."""
        ...


class SystemClock:
    """The process's real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def synchronized(self) -> bool | None:
        return os_clock_synchronized()


class FakeClock:
    """A clock that moves only when told to; thread-safe."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_790_000_000.0) -> None:
        self._lock = threading.Lock()
        self._mono = monotonic
        self._wall = wall
        self._synced: bool | None = None

    def synchronized(self) -> bool | None:
        with self._lock:
            return self._synced

    def set_synchronized(self, synced: bool | None) -> None:
        """Set what ``synchronized()`` reports, as a time service raising the OS flag does."""
        with self._lock:
            self._synced = synced

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time(self) -> float:
        with self._lock:
            return self._wall

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards: advance() takes seconds >= 0")
        with self._lock:
            self._mono += seconds
            self._wall += seconds

    def set_wall(self, wall: float) -> None:
        """Step the wall clock to ``wall`` (Unix s), as an NTP sync does; monotonic time stays."""
        with self._lock:
            self._wall = wall
