"""Evidence that a lost track's object is still there, and re-identification of lost tracks.

A detector blinks: SSD MobileNet v2 scores a person in dark clothes seen from behind below
0.3 for many seconds while they stand at a table. The tracker then holds a *lost* track
(``Tracker``: no detection matched it on this frame), and this module looks at the frame's
pixels to decide whether the object is still there:

* **appearance**: the last confident box still looks as it did then (one-band colour
  histogram similarity at least ``STILL_THERE``): a person standing still changes nothing,
  and the region turns to background once they have gone;
* **motion**: the track's predicted box, widened by ``MOTION_MARGIN`` of its size each side,
  compared with the same region of the previous processed frame (if at most
  ``MOTION_WINDOW_S`` before): at least ``MOTION_SHARE`` of its pixels changed by more than
  ``MOTION_LEVEL`` grey levels, outside the boxes of tracks matched on this frame.

A lost box lying mostly inside a matched one (``EXPLAINED_SHARE``) has no evidence of its own.

Re-identification: a young track (not yet established, so without events) is compared with
the established tracks of its class lost at most ``reid_window_s`` ago: height within
``REID_SIZE`` times, centre within one box height plus one per second lost (at most
``REID_REACH``), not on the other side of the frame from where a track walked out
(``EXIT_SPEED``, ``EDGE``), and the same appearance (the configured descriptor,
``edge_app.vision.appearance``). The best match takes the young track's place.

Cost: descriptors of a track are computed once when it is lost (from its last confident
sighting, whose frame the tracker holds until then and no longer), of a young track only
while an eligible lost track exists; the checks above read one to three patches of 24 x 48
pixels per lost track per processed frame, and nothing runs while every track is matched.
``docs/tracking.md`` has the figures.
"""

from __future__ import annotations

__all__ = [
    "EDGE",
    "EXIT_SPEED",
    "EXPLAINED_SHARE",
    "MOTION_LEVEL",
    "MOTION_MARGIN",
    "MOTION_SHARE",
    "MOTION_WINDOW_S",
    "REID_REACH",
    "REID_SIZE",
    "STILL_THERE",
    "TrackEvidence",
]

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.config import TrackingConfig
from edge_app.vision.appearance import Appearance, ColourHistogram, patch
from edge_app.vision.geometry import inside_share, similar_size
from edge_app.vision.track import Track

Box = tuple[float, float, float, float]

MOTION_LEVEL = 25
"""Grey levels a pixel must change by to count as moving (the motion gate's default)."""
MOTION_SHARE = 0.02
"""Share of a lost track's widened box that must move to count as evidence."""
MOTION_WINDOW_S = 0.5
"""Longest gap (seconds of frame time) between two processed frames that motion is told
across."""
MOTION_MARGIN = 0.25
"""How far around the box motion counts, as a share of its size each side."""
EXPLAINED_SHARE = 0.7
"""A lost track's box lying more than this share inside a matched track's box has no
evidence of its own: it is a duplicate of that object, or hidden behind it."""
STILL_THERE = 0.7
"""Colour similarity of a lost track's region to its last sighting that counts as the object
still being there. Measured on one-by-one-person-detection.mp4 (SSD v2 boxes): a person
standing where the detector lost them 0.72..0.96, the region once they have left 0.30..0.61."""
REID_SIZE = 1.5
"""Largest ratio of box heights for a re-identification (widths may differ at will)."""
REID_REACH = 3.0
"""Farthest re-identification, in box heights between the centres."""
EXIT_SPEED = 0.1
"""Speed towards the left or right side (normalised units per second) that counts as
walking out of the frame."""
EDGE = 0.02
"""A box this close to a frame side (normalised) touches it: an object moving out there has
left the frame, and only a box touching the same side can be it coming back."""


class TrackEvidence:
    """Looks at frames for one tracker: keeps the previous processed frame (a reference, not
    a copy) and computes descriptors of lost tracks and re-identification candidates.

    ``config`` says which evidence counts; ``reid`` is the re-identification descriptor
    (shared by the trackers of one camera, used by that camera's thread only).
    """

    def __init__(self, config: TrackingConfig, reid: Appearance) -> None:
        self.config = config
        self.reid = reid
        # One band for "still there": the whole region as it was, not who is in it.
        self._colour = ColourHistogram(stripes=1, threshold=STILL_THERE)
        self._image: NDArray[np.uint8] | None = None
        self._previous: NDArray[np.uint8] | None = None
        self._mono = float("-inf")

    def begin(self, image: NDArray[np.uint8], mono: float) -> None:
        """Start a processed frame (BGR ``image`` at ``mono`` seconds of frame time)."""
        previous, self._image = self._image, image
        recent = mono - self._mono <= MOTION_WINDOW_S
        self._mono = mono
        # Motion is told from the previous processed frame only if it is recent: between
        # frames a second apart (a gated camera while nothing moves) anything may have moved,
        # including the object walking away. A resized source's regions no longer correspond.
        same = previous is not None and previous.shape == image.shape
        self._previous = previous if same and recent else None

    def remember(self, track: Track) -> None:
        """Describe ``track`` as it was last seen confidently (``track.sighting`` on
        ``track.sighting_image``)."""
        image, box = track.sighting_image, track.sighting
        if image is None or box is None:
            return
        track.colour = self._colour.describe(image, box)
        if self.config.reid_window_s > 0:
            track.signature = self.reid.describe(image, box)

    def present(self, track: Track, mono: float, seen: list[Box]) -> str | None:
        """Why ``track``'s object looks still there on the current frame: ``"motion"``,
        ``"appearance"``, or None (no evidence). ``seen``: boxes of the tracks matched on this
        frame; what happens inside them is their objects', not this one's."""
        image = self._image
        if image is None or track.sighting is None:
            return None
        last = track.sighting
        taken = np.array(seen, np.float32).reshape(-1, 4)
        if len(taken) and float(np.max(inside_share(np.array(last, np.float32), taken))) > (
            EXPLAINED_SHARE
        ):
            return None  # a duplicate, or hidden behind an object that is tracked
        # Appearance first: it costs one patch where motion costs two, and a person standing
        # still (the usual dropout) is found by it.
        if self.config.appearance and track.colour is not None:
            # Where it was last seen: an object that moved on makes motion instead.
            now_colour = self._colour.describe(image, last)
            if now_colour is not None and self._colour.similarity(track.colour, now_colour) >= (
                self._colour.threshold
            ):
                return "appearance"
        if self.config.motion and self._previous is not None:
            region = _widened(track.predicted(mono), MOTION_MARGIN)
            now, before = patch(image, region), patch(self._previous, region)
            if now is not None and before is not None:
                grey = cv2.cvtColor(cv2.absdiff(now, before), cv2.COLOR_BGR2GRAY)
                moved = grey > MOTION_LEVEL
                for other in taken:
                    _clear(moved, region, other)
                if float(np.mean(moved)) >= MOTION_SHARE:
                    return "motion"
        return None

    def looks_like(self, track: Track, box: Box) -> bool:
        """Whether ``box`` on the current frame has the colours of ``track``'s last confident
        sighting (described now if it was not yet). True when either has no descriptor: no
        evidence against."""
        if track.colour is None and track.sighting_image is not None and track.sighting:
            track.colour = self._colour.describe(track.sighting_image, track.sighting)
        seen = self._colour.describe(self._image, box) if self._image is not None else None
        if seen is None or track.colour is None:
            return True
        return self._colour.similarity(track.colour, seen) >= self._colour.threshold

    def reidentify(self, box: Box, candidates: list[Track], mono: float) -> Track | None:
        """The lost track among ``candidates`` (same class, within the window) that the
        object at ``box`` on the current frame is, or None."""
        eligible = [t for t in candidates if t.signature is not None and _near(t, box, mono)]
        if not eligible or self._image is None:
            return None
        seen = self.reid.describe(self._image, box)
        if seen is None:
            return None
        best, best_sim = None, self.reid.threshold
        for track in eligible:
            assert track.signature is not None
            sim = self.reid.similarity(track.signature, seen)
            if sim >= best_sim:
                best, best_sim = track, sim
        return best


def _widened(box: Box, margin: float) -> Box:
    """``box`` grown by ``margin`` of its size each side, clipped to the frame."""
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return max(x1 - mx, 0.0), max(y1 - my, 0.0), min(x2 + mx, 1.0), min(y2 + my, 1.0)


def _clear(moved: NDArray[np.bool_], region: Box, other: NDArray[np.float32]) -> None:
    """Unset the pixels of ``moved`` (a patch of ``region``) that lie inside ``other``."""
    ph, pw = moved.shape
    x1, y1, x2, y2 = region
    sx, sy = pw / max(x2 - x1, 1e-6), ph / max(y2 - y1, 1e-6)
    left, right = int((other[0] - x1) * sx), int(np.ceil((other[2] - x1) * sx))
    top, bottom = int((other[1] - y1) * sy), int(np.ceil((other[3] - y1) * sy))
    moved[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = False


def _near(track: Track, box: Box, mono: float) -> bool:
    """Whether ``box`` has the size of ``track``'s last confident box and lies within reach."""
    assert track.sighting is not None
    x1, y1, x2, y2 = last = track.sighting
    # Heights only: the last sighting is often a sliver of someone stepping behind something.
    sized = similar_size(np.array([last], np.float32), np.array([box], np.float32), REID_SIZE, None)
    if not sized[0, 0]:
        return False
    side = _exit(track)
    if side is not None and not _touches(box, side):
        return False  # it walked out of the frame there: only someone coming back in can be it
    h = y2 - y1
    reach = min(1.0 + max(mono - track.last_mono, 0.0), REID_REACH) * h
    dx = (box[0] + box[2] - x1 - x2) / 2
    dy = (box[1] + box[3] - y1 - y2) / 2
    return bool(np.hypot(dx, dy) <= reach)


def _touches(box: Box, side: int) -> bool:
    """Whether ``box`` reaches the frame's left (``side`` 0) or right (2) side."""
    return box[0] <= EDGE if side == 0 else box[2] >= 1.0 - EDGE


def _exit(track: Track) -> int | None:
    """The frame side (0 left, 2 right) ``track``'s last confident box touched while moving
    towards it faster than ``EXIT_SPEED``, or None. Only the sides: the bottom edge is where a
    standing person's feet often are, and a box's jitter there is no exit."""
    assert track.sighting is not None
    box, vx = track.sighting, track.velocity[0]
    if vx < -EXIT_SPEED and _touches(box, 0):
        return 0
    if vx > EXIT_SPEED and _touches(box, 2):
        return 2
    return None
