"""Live sources (V4L2/USB index, RTSP/HTTP URL): a capture thread that keeps only the latest frame.

A camera does not wait for us: if processing is slower than capture, older frames are replaced
and counted in ``dropped`` rather than queued without bound. A stream that fails is reopened
with capped exponential backoff.
"""

from __future__ import annotations

__all__ = ["LiveSource"]

import logging
import threading
from collections.abc import Callable, Iterator

import cv2

from edge_app.clock import Clock
from edge_app.domain import Frame, Image, as_image
from edge_app.redact import redact_url

log = logging.getLogger(__name__)

Opener = Callable[[], cv2.VideoCapture]


class LiveSource:
    """Latest-frame capture from a device index or stream URL; never ends by itself."""

    def __init__(
        self,
        target: int | str,
        camera: str,
        *,
        clock: Clock,
        resize: tuple[int, int] | None = None,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        opener: Opener | None = None,
    ) -> None:
        self.camera = camera
        self._target = target
        self._clock = clock
        self._resize = resize
        self._backoff = (backoff_min_s, backoff_max_s)
        self._open: Opener = opener or self._default_open
        self._cond = threading.Condition()
        self._latest: tuple[Image, float, float] | None = None
        self._captured = 0
        self._delivered = 0
        self.reconnects = 0

    def _default_open(self) -> cv2.VideoCapture:
        if isinstance(self._target, int):
            return cv2.VideoCapture(self._target, cv2.CAP_V4L2)
        return cv2.VideoCapture(self._target, cv2.CAP_FFMPEG)

    @property
    def dropped(self) -> int:
        with self._cond:
            return max(0, self._captured - self._delivered - (self._latest is not None))

    def _describe(self) -> str:
        if isinstance(self._target, int):
            return f"/dev/video{self._target}"
        # a URL may embed credentials (rtsp://user:pass@host/s?token=...): never log them
        return redact_url(self._target)

    def _capture(self, done: threading.Event) -> None:
        delay = self._backoff[0]
        while not done.is_set():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                log.warning(
                    "camera %s: cannot open %s; retrying in %.1f s",
                    self.camera,
                    self._describe(),
                    delay,
                )
                done.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            log.info("camera %s: capturing from %s", self.camera, self._describe())
            try:
                while not done.is_set():
                    ok, image = cap.read()
                    if not ok:
                        break
                    delay = self._backoff[0]  # a frame arrived: the stream is healthy
                    if self._resize is not None:
                        image = cv2.resize(image, self._resize, interpolation=cv2.INTER_AREA)
                    stamp = (as_image(image), self._clock.monotonic(), self._clock.time())
                    with self._cond:
                        self._latest = stamp
                        self._captured += 1
                        self._cond.notify()
            finally:
                cap.release()
            if not done.is_set():
                self.reconnects += 1
                log.warning(
                    "camera %s: stream from %s failed; reopening in %.1f s",
                    self.camera,
                    self._describe(),
                    delay,
                )
                done.wait(delay)
                delay = min(delay * 2, self._backoff[1])

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        done = threading.Event()
        thread = threading.Thread(
            target=self._capture, args=(done,), name=f"capture-{self.camera}", daemon=True
        )
        thread.start()
        index = 0
        try:
            while not stop.is_set():
                with self._cond:
                    if self._latest is None:
                        self._cond.wait(timeout=0.1)
                    latest, self._latest = self._latest, None
                    if latest is not None:
                        self._delivered += 1
                if latest is not None:
                    image, mono, wall = latest
                    yield Frame(self.camera, index, mono, wall, image)
                    index += 1
        finally:
            done.set()
            thread.join(timeout=2.0)

    def close(self) -> None:
        """Nothing to release: the capture thread owns its VideoCapture and ends with ``frames``."""
