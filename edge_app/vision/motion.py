"""Motion gating: run the detector only when something moves (or must be watched).

``MotionDetector`` works on a downscaled, blurred grey copy of each frame (about 160 pixels
wide, so it costs a fraction of a millisecond) and compares it with the previous one: pixels
differing by more than ``threshold`` grey levels, outside the masks, are "changed"; motion is
present when the changed share of the frame reaches ``min_area``. Frame differencing rather than
a running-average background: a background keeps the "ghost" of someone who just left for
dozens of frames, and reports motion all that time (on a real clip it flagged more than twice
as many frames; docs/benchmarks.md). A person standing still makes no motion, which is why
``DetectionGate`` also keeps detecting, at a lower rate, while the rules have live objects.

``DetectionGate`` decides per frame: detect on motion, at most every ``motion_every_s`` (the
tracker follows a walking person at 4 fps, so detecting every frame of a 10 fps camera while
someone walks buys nothing); while the rules are busy (open episodes or live tracks) but
nothing moves, every ``still_every_s`` (a person standing still stays watched, and ends when
they are gone, at a fraction of the cost); and otherwise at least every ``force_every_s`` of
frame time.

The downscale is the motion detector's main cost, and it runs on every frame, gated or not:
a linear resize of the colour frame and then the grey conversion is several times cheaper
than an area-averaging resize (docs/benchmarks.md). The 5 x 5 blur that follows does the
smoothing that area averaging would have done.
"""

from __future__ import annotations

__all__ = ["DetectionGate", "MotionDetector"]

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.config import MotionConfig


class MotionDetector:
    """Frame-differencing motion detector for one camera. Not thread-safe."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._previous: NDArray[np.uint8] | None = None
        self._keep: NDArray[np.uint8] | None = None  # 1 where motion counts (outside masks)
        self._kept = 1  # unmasked pixels of the small frame
        self._size: tuple[int, int] | None = None
        self.changed_share = 0.0
        """Share (0..1) of the unmasked frame that changed in the last ``update``."""
        self.region: tuple[float, float, float, float] | None = None
        """Box (x1, y1, x2, y2, normalised) around the changed pixels of the last ``update``
        that reported motion; None otherwise."""

    def _prepare(self, image: NDArray[np.uint8]) -> tuple[int, int]:
        h, w = image.shape[:2]
        width = min(self.config.width, w)
        size = (width, max(1, round(h * width / w)))
        if size != self._size:
            self._size = size
            self._previous = None
            keep = np.ones((size[1], size[0]), np.uint8)
            for polygon in self.config.masks:
                points = np.array(polygon, np.float32) * np.array(size, np.float32)
                cv2.fillPoly(keep, [np.round(points).astype(np.int32)], 0)
            self._keep = keep
            self._kept = max(cv2.countNonZero(keep), 1)
        return size

    def update(self, image_bgr: NDArray[np.uint8]) -> bool:
        """Feed one BGR frame; True when it differs enough from the previous one. The first
        frame of a size reports motion (nothing is known yet)."""
        size = self._prepare(image_bgr)
        small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_LINEAR)
        grey: NDArray[np.uint8] = np.asarray(
            cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0), np.uint8
        )
        previous, self._previous = self._previous, grey
        self.region = None
        if previous is None:
            self.changed_share = 1.0
            self.region = (0.0, 0.0, 1.0, 1.0)
            return True
        diff = cv2.absdiff(grey, previous)
        changed = np.asarray(
            cv2.threshold(diff, self.config.threshold, 1, cv2.THRESH_BINARY)[1], np.uint8
        )
        assert self._keep is not None
        changed &= self._keep
        self.changed_share = cv2.countNonZero(changed) / self._kept
        moving = self.changed_share >= self.config.min_area and self.changed_share > 0
        if moving:
            x, y, w, h = cv2.boundingRect(changed)
            sw, sh = size
            self.region = (x / sw, y / sh, (x + w) / sw, (y + h) / sh)
        return moving


class DetectionGate:
    """Whether to run the detector on a frame: motion, busy rules, or a forced detection due.

    Times are frame ``mono`` seconds. Counts what it decided, for stats and benchmarks.
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self.motion = MotionDetector(config)
        self._last_detect = float("-inf")
        self.detected = 0
        self.skipped = 0
        self.crop_region: tuple[float, float, float, float] | None = None
        """With ``config.crop``: the motion box (normalised) of a frame the gate passed for
        motion alone while nothing was tracked, to detect around; None: the whole frame."""

    def should_detect(self, mono: float, image_bgr: NDArray[np.uint8], busy: bool) -> bool:
        """Decide for one frame. ``busy``: the rules have open episodes or live tracks."""
        moving = self.motion.update(image_bgr)  # always fed, so the background stays current
        since = mono - self._last_detect
        force = self.config.force_every_s
        due = force > 0 and since >= force
        still_due = busy and since >= self.config.still_every_s
        # 1 ms early, as the camera loop's fps limit: timestamps i / fps carry float jitter
        moving_due = moving and since >= self.config.motion_every_s - 1e-3
        self.crop_region = None
        if not self.config.enabled or moving_due or still_due or due:
            if self.config.crop and moving_due and not busy and not due:
                # nothing tracked that a crop could hide: look closely at what moved
                self.crop_region = self.motion.region
            self._last_detect = mono
            self.detected += 1
            return True
        self.skipped += 1
        return False
