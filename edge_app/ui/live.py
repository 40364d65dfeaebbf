"""Live view JPEGs, throttled: at most ``fps`` encodes per camera per second, whatever the
number of viewers, and at most ``fps`` answers per second on each connection.

A viewer's request takes the latest ``Preview`` of the camera's ``PreviewSlot`` (and asks the
camera loop for the next). A request that comes sooner than ``1 / fps`` after the last encode
waits for the next slot (on its own HTTP thread; the endpoint bounds those); when another
viewer encoded meanwhile, or no new frame came, the last JPEG is sent again. Encoding runs on
the viewer's HTTP thread under a per-camera lock, so the frame loop never draws or encodes,
and two viewers never encode the same frame twice.
"""

from __future__ import annotations

__all__ = ["LiveView"]

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2

from edge_app.actions import Preview, PreviewSlot, annotate

_QUALITY = 75


@dataclass(slots=True)
class _Cached:
    preview: Preview | None = None
    jpeg: bytes | None = None
    made: float = float("-inf")  # LiveView's now() at the encode


class LiveView:
    """The live JPEGs of the cameras in ``slots`` (camera name -> slot). ``now`` and
    ``sleep`` (seconds) pace the answers: the viewers' real time by default, whatever clock
    the frames carry."""

    def __init__(
        self,
        slots: Mapping[str, PreviewSlot],
        *,
        fps: float,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self._now, self._sleep = now, sleep
        self._slots = dict(slots)
        self._interval = 1.0 / fps
        self._locks = {name: threading.Lock() for name in slots}
        self._cache = {name: _Cached() for name in slots}
        self.encoded = 0  # JPEGs made, all cameras (the bench and tests read it)

    @property
    def cameras(self) -> list[str]:
        return list(self._slots)

    def jpeg(self, camera: str) -> bytes | None:
        """The camera's current annotated JPEG; None before its first frame or for an unknown
        camera. A request within ``1 / fps`` of the last encode waits for the next slot, so
        each connection gets at most ``fps`` answers a second, however fast it asks."""
        slot = self._slots.get(camera)
        if slot is None:
            return None
        cached = self._cache[camera]
        with self._locks[camera]:
            wait = cached.made + self._interval - self._now()
        if wait > 0:
            self._sleep(wait)
        with self._locks[camera]:
            now = self._now()
            if cached.jpeg is not None and now - cached.made < self._interval:
                return cached.jpeg  # another viewer's request encoded it meanwhile
            preview = slot.take()
            if preview is None or preview is cached.preview:
                return cached.jpeg
            ok, data = cv2.imencode(".jpg", annotate(preview), [cv2.IMWRITE_JPEG_QUALITY, _QUALITY])
            if ok:
                cached.preview, cached.jpeg, cached.made = preview, data.tobytes(), now
                self.encoded += 1
            return cached.jpeg
