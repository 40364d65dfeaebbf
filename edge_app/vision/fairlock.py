"""A first-come, first-served lock for one detector shared by several camera loops.

``threading.Lock`` promises no order: a camera thread that releases the detector and asks
again at once often wins again, and the others starve. ``FairLock`` hands the detector out in
the order it was asked for (a ticket lock), so N cameras share it round-robin, and records per
caller how long it waited.
"""

from __future__ import annotations

__all__ = ["FairLock"]

import threading
import time
from types import TracebackType


class FairLock:
    """FIFO mutual exclusion; usable as a context manager like ``threading.Lock``."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0
        self.waits: dict[str, float] = {}
        """Seconds spent waiting, per thread name (monotonic clock)."""

    def acquire(self) -> bool:
        """Block until every earlier caller has had its turn; always returns True."""
        t0 = time.monotonic()
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                self._cond.wait()
        name = threading.current_thread().name
        self.waits[name] = self.waits.get(name, 0.0) + time.monotonic() - t0
        return True

    def release(self) -> None:
        """Hand the lock to the next ticket."""
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
