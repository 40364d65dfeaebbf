"""Video files (mp4, avi, gif, ...): every frame, decoded ahead on a reader thread.

Frames are stamped on the video's own timeline (index / fps from the moment the replay starts),
so rules and events are deterministic on replay whatever the machine's speed. With ``realtime``
the frames are also *delivered* at that pace, like a camera.
"""

from __future__ import annotations

__all__ = ["VideoFileSource", "open_video"]

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import cv2

from edge_app.clock import Clock
from edge_app.domain import Frame, Image, as_image
from edge_app.errors import SourceError
from edge_app.sources.base import FramePreparer

log = logging.getLogger(__name__)
_DEFAULT_FPS = 10.0
_END = object()


def open_video(path: Path) -> cv2.VideoCapture:
    """Open a video file or raise ``SourceError`` saying why it cannot be read."""
    if path.is_dir():
        raise SourceError(
            f"{path} is a directory, not a video file; give a file (for a folder of images "
            "use source type: images)"
        )
    if not path.is_file():
        raise SourceError(f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise SourceError(
            f"cannot open {path} as a video: the file is corrupt or in a format OpenCV's FFmpeg "
            "backend cannot decode (try re-encoding it as H.264 mp4)"
        )
    return cap


class VideoFileSource:
    """Replays a video file, delivering every frame (none dropped) unless ``stop`` is set.

    ``start_s`` seeks that far into the file first (seconds of the file's timeline); the
    delivered frames are still numbered and stamped from 0. A ``loop`` starts over at 0.
    """

    def __init__(
        self,
        path: Path,
        camera: str,
        *,
        clock: Clock,
        realtime: bool = False,
        speed: float = 1.0,
        loop: bool = False,
        resize: tuple[int, int] | None = None,
        prefetch: int = 4,
        start_s: float = 0.0,
    ) -> None:
        self.camera = camera
        self.path = path
        self._clock = clock
        self._realtime = realtime
        self._speed = speed
        self._loop = loop
        self._resize = resize
        self._cap = open_video(path)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps <= 1000.0 else _DEFAULT_FPS
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        start = round(start_s * self.fps)
        if start > 0 and (
            0 < self.frame_count <= start or not self._cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        ):
            self._cap.release()
            raise SourceError(
                f"start_s {start_s} is frame {start} of {path}, which has {self.frame_count} "
                f"frames at {self.fps:g} fps: pick a start inside the clip"
            )
        self._start = start
        ok, first = self._cap.read()
        if not ok:
            self._cap.release()
            raise SourceError(f"{path} opened but holds no decodable frame (empty or corrupt)")
        self._first: Image | None = as_image(first)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, prefetch))
        self._preparer: FramePreparer | None = None

    def prepare_with(self, preparer: FramePreparer | None) -> None:
        """Run ``preparer`` on each image on the reader thread (``PreparesFrames``)."""
        self._preparer = preparer

    @property
    def dropped(self) -> int:
        return 0  # replay delivers every frame; backpressure slows the reader instead

    def _read(self) -> Image | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        ok, image = self._cap.read()
        if ok:
            return as_image(image)
        if self._loop and self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, image = self._cap.read()
            if ok:
                return as_image(image)
        return None

    def _reader(self, done: threading.Event) -> None:
        try:
            while not done.is_set():
                image = self._read()
                if image is None:
                    break
                if self._resize is not None:
                    image = as_image(cv2.resize(image, self._resize, interpolation=cv2.INTER_AREA))
                preparer = self._preparer
                # here the frame was just decoded and is still in cache
                prepared = preparer.prepare(image) if preparer is not None else None
                self._put((image, prepared), done)
        except cv2.error:
            log.exception("decoding %s failed", self.path)
        finally:
            self._put(_END, done)

    def _put(self, item: object, done: threading.Event) -> None:
        # bounded queue: a slow consumer slows the reader instead of growing memory
        while not done.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        done = threading.Event()  # set by stop, or when the consumer stops iterating
        reader = threading.Thread(
            target=self._reader, args=(done,), name=f"read-{self.camera}", daemon=True
        )
        reader.start()
        t0_mono, t0_wall = self._clock.monotonic(), self._clock.time()
        index = 0
        try:
            while not stop.is_set():
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                offset = index / self.fps
                if self._realtime:
                    delay = t0_mono + offset / self._speed - self._clock.monotonic()
                    if delay > 0 and stop.wait(delay):
                        break
                image, prepared = cast(tuple[Image, object], item)
                yield Frame(self.camera, index, t0_mono + offset, t0_wall + offset, image, prepared)
                index += 1
        finally:
            done.set()
            reader.join(timeout=2.0)
        if 0 < index < self.frame_count - 1 - self._start and not self._loop and not stop.is_set():
            log.warning(
                "%s ended at frame %d of %d: the rest could not be decoded",
                self.path,
                index,
                self.frame_count,
            )

    def close(self) -> None:
        self._cap.release()
