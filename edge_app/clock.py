"""Time as an input: the ``Clock`` protocol, the system clock and a ``FakeClock`` for tests."""

from __future__ import annotations

__all__ = ["Clock", "FakeClock", "SystemClock"]

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds for ordering and intervals; wall seconds (Unix epoch, UTC) for stamps."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The process's real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to; thread-safe."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_790_000_000.0) -> None:
        self._lock = threading.Lock()
        self._mono = monotonic
        self._wall = wall

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
