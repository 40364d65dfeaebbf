"""One tracked object: its boxes, scores, velocity, and what the tracker knows of it while
it is lost (``edge_app.vision.tracker``, ``edge_app.vision.evidence``)."""

from __future__ import annotations

__all__ = ["Track"]

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(slots=True)
class Track:
    """One tracked object. ``box`` is the last matched box (normalised x1, y1, x2, y2);
    times are frame ``mono`` seconds; ``scores`` holds the last ``history`` scores."""

    track_id: int
    label: str
    class_id: int
    box: tuple[float, float, float, float]
    first_mono: float
    last_mono: float
    hits: int = 0
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=30))
    best_score: float = 0.0
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    best_mono: float = 0.0
    seen_now: bool = True
    velocity: tuple[float, float] = (0.0, 0.0)
    """Smoothed centre velocity, normalised units per second of frame time."""
    alive_mono: float = 0.0
    """Last frame time with a detection or, while lost, evidence that the object is there."""
    missed: int = 0
    """Processed frames in a row that matched no detection to this track."""
    established: bool = False
    """Confirmed once (``min_hits`` detections, median score >= ``high_score``): only such
    tracks are kept alive by evidence or resumed by re-identification."""
    kept_by: str | None = None
    """The evidence that last kept this lost track alive (``"motion"``, ``"appearance"``)."""
    resumed: int = 0
    """How many times a re-identification resumed this track."""
    sighting: tuple[float, float, float, float] | None = None
    """The box of the last confident detection (weak boxes are often loose)."""
    sighting_image: NDArray[np.uint8] | None = None
    """The frame of ``sighting`` (a reference, not a copy), kept until the track is lost and
    described: a lost track holds no frame."""
    remembered: bool = False
    """Whether ``colour`` and ``signature`` describe ``sighting`` (computed once lost)."""
    colour: NDArray[np.float32] | None = None
    """Colour histogram of ``sighting`` (keep-alive evidence), once lost."""
    signature: NDArray[np.float32] | None = None
    """Re-identification descriptor of ``sighting``, once lost."""

    def predicted(self, mono: float) -> tuple[float, float, float, float]:
        """The box moved by the velocity to time ``mono`` (at most 1 s ahead)."""
        dt = min(max(mono - self.last_mono, 0.0), 1.0)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x1, y1, x2, y2 = self.box
        return x1 + dx, y1 + dy, x2 + dx, y2 + dy

    @property
    def median_score(self) -> float:
        """Median of the recent scores: robust to a single lucky frame."""
        return float(np.median(np.fromiter(self.scores, float))) if self.scores else 0.0

    def hit(self, mono: float, box: tuple[float, float, float, float], score: float) -> None:
        """Record a matched detection (``box`` normalised, ``score`` 0..1) at ``mono``."""
        dt = mono - self.last_mono
        if self.hits and dt > 0:
            vx = ((box[0] + box[2]) - (self.box[0] + self.box[2])) / 2 / dt
            vy = ((box[1] + box[3]) - (self.box[1] + self.box[3])) / 2 / dt
            # Half old, half new: steady walkers are predicted, one jittery box is damped.
            self.velocity = (0.5 * (self.velocity[0] + vx), 0.5 * (self.velocity[1] + vy))
        self.box = box
        self.last_mono = self.alive_mono = mono
        self.kept_by, self.missed = None, 0
        self.hits += 1
        self.scores.append(score)
        self.seen_now = True
        if score > self.best_score:
            self.best_score, self.best_box, self.best_mono = score, box, mono
