"""A first-come, first-served lock for one detector shared by several camera loops.

``threading.Lock`` promises no order: a camera thread that releases the detector and asks
again at once often wins again, and the others starve. ``FairLock`` hands the detector out in
the order it was asked for, so N cameras share it round-robin, and records per caller how long
it waited.

Each waiter sleeps on its own private lock and ``release`` hands over to the first one
directly. A condition variable with ``notify_all`` would wake every waiting camera on every
release, only for all but one to go back to sleep: with 16 cameras that is 15 needless
wake-ups per frame, each of which has to take the GIL from the thread that is preparing the
next frame.
"""

from __future__ import annotations

__all__ = ["FairLock"]

import threading
import time
from collections import deque
from types import TracebackType


class FairLock:
    """FIFO mutual exclusion; usable as a context manager like ``threading.Lock``."""

    def __init__(self) -> None:
        self._guard = threading.Lock()  # protects the three fields below; held for microseconds
        self._held = False
        self._waiters: deque[threading.Lock] = deque()
        self._next_ticket = 0
        """Callers so far (each ``acquire`` takes one ticket)."""
        self.waits: dict[str, float] = {}
        """Seconds spent waiting, per thread name (monotonic clock)."""

    def acquire(self) -> bool:
        """Block until every earlier caller has had its turn; always returns True."""
        t0 = time.monotonic()
        with self._guard:
            self._next_ticket += 1
            if not self._held:
                self._held = True
                turn = None
            else:
                turn = threading.Lock()
                turn.acquire()  # released by the holder that hands the lock to us
                self._waiters.append(turn)
        if turn is not None:
            turn.acquire()
        name = threading.current_thread().name
        self.waits[name] = self.waits.get(name, 0.0) + time.monotonic() - t0
        return True

    def release(self) -> None:
        """Hand the lock to the longest waiting caller, or free it when nobody waits."""
        with self._guard:
            if not self._held:
                raise RuntimeError("FairLock released while not held")
            if self._waiters:
                self._waiters.popleft().release()  # ownership passes on: _held stays True
            else:
                self._held = False

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
