"""One camera loop's counters, read by telemetry, ``/status`` and the updater's health watch."""

from __future__ import annotations

__all__ = ["CameraStats"]

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class CameraStats:
    """Counters of one camera's loop; read from other threads without a lock (ints only).

    ``cropped`` counts detections run on a window around small motion (``motion.crop``).
    ``detecting`` is true while the loop is inside ``detect``; ``inference_ms`` keeps the
    detector time of the last frames (ms) for the telemetry collector (an append is atomic).
    ``inspected`` counts frames given to anomaly inspection, ``inspect_ms`` their cost (ms).
    """

    frames: int = 0
    processed: int = 0
    skipped_rate: int = 0
    skipped_motion: int = 0
    cropped: int = 0
    tamper_events: int = 0
    dropped_late: int = 0
    detections: int = 0
    events: int = 0
    events_unstored: int = 0
    last_frame_mono: float = 0.0
    first_detection_mono: float | None = None
    config_version: int = 0
    config_changes: int = 0
    config_adopted_mono: float = 0.0
    detecting: bool = False
    inference_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    inspected: int = 0
    inspect_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    detect_errors: int = 0
    last_detect_error: str = ""

    @property
    def lost(self) -> int:
        """Frames read but neither processed nor skipped on purpose (fps limit, motion gate):
        dropped late, or lost to a failed ``detect`` (exact once the loop has ended)."""
        return self.frames - self.processed - self.skipped_rate - self.skipped_motion
