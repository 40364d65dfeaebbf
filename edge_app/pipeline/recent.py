"""The few recent frames a new model is test-run on before an over-the-air switch."""

from __future__ import annotations

__all__ = ["RecentFrames"]

import threading
from collections import deque

from edge_app.domain import Frame


class RecentFrames:
    """A few recent frames of each camera, kept by reference (a frame is never written to
    after it is read), one every ``every_s`` seconds: what a new model is test-run on before
    a switch. ``offer`` is on the hot path: one comparison per frame, a lock once per
    ``every_s``."""

    def __init__(self, keep: int, every_s: float) -> None:
        self._keep = max(1, keep)
        self._every = every_s
        self._due: dict[str, float] = {}
        self._frames: dict[str, deque[Frame]] = {}
        self._lock = threading.Lock()

    def offer(self, camera: str, frame: Frame) -> None:
        if frame.mono < self._due.get(camera, float("-inf")):
            return
        self._due[camera] = frame.mono + self._every
        with self._lock:
            ring = self._frames.setdefault(camera, deque(maxlen=self._keep))
            ring.append(frame)

    def latest(self, n: int) -> list[Frame]:
        """Up to ``n`` frames, newest first, taken in turn from each camera."""
        with self._lock:
            rings = [list(ring) for ring in self._frames.values()]
        out: list[Frame] = []
        while len(out) < n and any(rings):
            for ring in rings:
                if ring and len(out) < n:
                    out.append(ring.pop())
        return out
