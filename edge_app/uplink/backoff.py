"""Capped, jittered exponential backoff: how long to wait before the next attempt.

Pure and clock-free: ``next()`` returns seconds and the caller does the waiting (with
``stop.wait(...)`` so shutdown stays prompt). Jitter spreads a fleet's reconnects after a broker
outage instead of having every device knock at the same instant.
"""

from __future__ import annotations

__all__ = ["Backoff"]

import random


class Backoff:
    """Delays that double per attempt from ``min_s`` up to ``max_s`` seconds, with jitter.

    Attempt ``n`` (0-based, counted since the last ``reset()``) has a ceiling
    ``b = min(max_s, min_s * factor**n)``; ``next()`` returns a delay drawn uniformly from
    ``[b / 2, b]``, so no delay ever exceeds ``max_s`` and half the ceiling is always kept.
    ``rng`` is owned by the caller; pass a seeded ``random.Random`` for reproducible tests.
    Not thread-safe: one owner calls ``next()`` and ``reset()``.
    """

    def __init__(
        self,
        min_s: float,
        max_s: float,
        rng: random.Random | None = None,
        *,
        factor: float = 2.0,
    ) -> None:
        if not min_s > 0:
            raise ValueError(f"Backoff min_s must be > 0 seconds, got {min_s}")
        if max_s < min_s:
            raise ValueError(f"Backoff max_s ({max_s} s) must be >= min_s ({min_s} s)")
        if factor < 1:
            raise ValueError(f"Backoff factor must be >= 1, got {factor}")
        self._min_s = min_s
        self._max_s = max_s
        self._factor = factor
        # Not for cryptography: jitter only needs to differ between devices.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._attempt = 0

    @property
    def attempts(self) -> int:
        """How many delays ``next()`` has handed out since the last ``reset()``."""
        return self._attempt

    def ceiling(self) -> float:
        """The largest delay (seconds) the next call to ``next()`` can return."""
        # Cap the exponent's effect early so huge attempt counts cannot overflow a float.
        ceiling = self._min_s
        for _ in range(self._attempt):
            ceiling *= self._factor
            if ceiling >= self._max_s:
                return self._max_s
        return min(ceiling, self._max_s)

    def next(self) -> float:
        """The delay in seconds before the next attempt; advances the attempt counter."""
        ceiling = self.ceiling()
        self._attempt += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def sibling(self) -> Backoff:
        """A new backoff with the same bounds, factor and ``rng``, at attempt 0 (for a second
        kind of attempt that must not lengthen this one's delays)."""
        return Backoff(self._min_s, self._max_s, self._rng, factor=self._factor)

    def reset(self) -> None:
        """Start over at ``min_s`` (call after a success)."""
        self._attempt = 0
