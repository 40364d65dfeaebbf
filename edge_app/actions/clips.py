"""Local action: a pre/post clip per event, from a ring buffer, written off the frame loop.

``ClipRecorder`` keeps the last ``pre_s`` seconds of frames of one camera (downscaled to at
most ``width`` pixels, thinned to ``fps`` and held as JPEG, a small fraction of the raw frames'
size; docs/benchmarks.md). When an event starts, ``begin`` takes the buffered frames and keeps
collecting for ``post_s``; the finished clip goes to one writer thread through a bounded queue
and is written as ``mp4v`` with OpenCV. The frame loop only appends references and never waits
on the disk: when the queue is full the clip is dropped and counted. Clips are 0600 files in a
0700 folder, written to a unique temp name and renamed once complete
(``edge_app.files.atomic_writer``); ``edge_app.actions.retention`` deletes them by total size
and age.

With a ``Sealer`` that seals new items (``encryption.enabled``), a clip is stored encrypted as
``<name>.mp4.enc`` (written the same way, with ``edge_app.files.write_atomic``). OpenCV's
``VideoWriter`` can only write to a path, so the clear mp4 exists as a private scratch file
(``edge_app.files.scratch_file``, mode 0600) from the start of its encoding until it has been
read back and sealed, then it is deleted: the window lasts as long as encoding the clip (tens
to hundreds of milliseconds for a few seconds of 640 px video). ``ClipWriter(scratch=...)``
puts that file on a RAM-backed directory (the app uses ``/dev/shm`` when it can write there,
see ``ram_scratch``), so the clear bytes never reach the storage device; otherwise it is in the
clip's own folder, where the deleted file's blocks stay on the medium until they are reused.
"""

from __future__ import annotations

__all__ = ["ClipRecorder", "ClipWriter", "ram_scratch"]

import logging
import os
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_app.atrest import Sealer, sealed_file
from edge_app.domain import Frame, Image, as_image
from edge_app.files import atomic_writer, private_dir, read_nofollow, scratch_file, write_atomic

log = logging.getLogger(__name__)
_JPEG_QUALITY = 90  # ring-buffer frames; mp4v re-encodes them anyway
_SHM = Path("/dev/shm")  # noqa: S108  (used through scratch_file: O_EXCL, O_NOFOLLOW, 0600)


def ram_scratch() -> Path | None:
    """``/dev/shm`` (RAM-backed on Linux) if this process may write there, else None."""
    return _SHM if _SHM.is_dir() and os.access(_SHM, os.W_OK | os.X_OK) else None


@dataclass(slots=True)
class _Clip:
    path: Path
    frames: list[bytes]  # JPEG; decoded one at a time by the writer thread
    until: float  # frame mono time the clip ends at
    fps: float
    done: threading.Event = field(default_factory=threading.Event)


class ClipWriter:
    """One thread writing finished clips; ``max_pending`` bounds the queue. Owns the thread:
    call ``close()`` (waits for the queued clips). With ``sealer`` sealing new items, clips are
    stored encrypted; ``scratch`` is where their clear mp4 is encoded first (None: the clip's
    own folder)."""

    def __init__(
        self, max_pending: int = 4, *, sealer: Sealer | None = None, scratch: Path | None = None
    ) -> None:
        self._sealer = sealer
        self._scratch = scratch
        self._queue: queue.Queue[_Clip | None] = queue.Queue(max_pending)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)
        self._thread.start()

    def submit(self, clip: _Clip) -> bool:
        """Queue a finished clip without blocking; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(clip)
        except queue.Full:
            self.dropped += 1
            clip.done.set()
            log.warning("clip %s dropped: the writer is behind", clip.path.name)
            return False
        return True

    def _run(self) -> None:
        while (clip := self._queue.get()) is not None:
            try:
                if self._sealer is not None and self._sealer.seal_new:
                    _write_sealed(clip, self._sealer, self._scratch)
                else:
                    _write(clip)
                self.written += 1
            except (OSError, cv2.error) as exc:
                self.failed += 1
                log.error("clip %s could not be written: %s", clip.path, exc)
            finally:
                clip.done.set()

    def close(self) -> None:
        """Write what is queued, then stop the thread. Idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _decode(jpeg: bytes, clip: _Clip) -> Image:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:  # only if the ring's bytes were damaged; the clip is reported failed
        raise OSError(f"clip {clip.path.name}: a buffered frame is not a decodable JPEG")
    return as_image(image)


def _encode(clip: _Clip, path: Path) -> None:
    """Write ``clip``'s frames as mp4v to the existing file ``path``: OpenCV opens it by name
    and truncates it, which keeps its 0600 mode."""
    h, w = _decode(clip.frames[0], clip).shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), clip.fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open {path} for mp4v writing")
    try:
        for jpeg in clip.frames:
            writer.write(_decode(jpeg, clip))  # one decoded frame alive at a time
    finally:
        writer.release()


def _write(clip: _Clip) -> None:
    if not clip.frames:
        return
    private_dir(clip.path.parent)
    # readers never see a half-written clip, and it is fsync'd before the rename
    with atomic_writer(clip.path) as tmp:
        _encode(clip, tmp.path)


def _write_sealed(clip: _Clip, sealer: Sealer, scratch: Path | None) -> None:
    """Encode ``clip`` into a private scratch file, store it sealed, delete the clear file."""
    if not clip.frames:
        return
    folder = private_dir(clip.path.parent)
    with scratch_file(scratch or folder, suffix=".mp4") as clear:
        _encode(clip, clear)
        target, data = sealed_file(sealer, clip.path, read_nofollow(clear))
    # the scratch file is gone (the end of the window with clear bytes on disk); readers
    # never see half a sealed clip
    write_atomic(target, data)


class ClipRecorder:
    """Ring buffer and open clips of one camera. Call ``push`` for every frame (frame loop)."""

    def __init__(
        self,
        directory: Path,
        writer: ClipWriter,
        *,
        pre_s: float = 3.0,
        post_s: float = 5.0,
        fps: float = 5.0,
        width: int = 640,
    ) -> None:
        self.directory = Path(directory)
        self._writer = writer
        self.pre_s, self.post_s, self.fps, self.width = pre_s, post_s, fps, width
        # JPEG bytes, not arrays: a JPEG (quality 90) is a twentieth of the raw frame and
        # costs less to encode than the resize before it (docs/benchmarks.md). Clips
        # waiting for their post_s or for the writer hold the same bytes.
        self._ring: deque[tuple[float, bytes]] = deque()
        self._jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        self._open: list[_Clip] = []
        self._last_kept = float("-inf")

    def push(self, frame: Frame) -> None:
        """Offer one frame; kept at ``fps`` at most, downscaled to ``width``."""
        if frame.mono - self._last_kept < 1.0 / self.fps - 1e-3:
            return
        self._last_kept = frame.mono
        image = frame.image
        h, w = image.shape[:2]
        if w > self.width:
            size = (self.width, round(h * self.width / w) // 2 * 2)
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        ok, encoded = cv2.imencode(".jpg", image, self._jpeg_params)
        if not ok:  # cannot happen for a uint8 BGR image; skip the frame rather than fail
            return
        jpeg = encoded.tobytes()
        self._ring.append((frame.mono, jpeg))
        while self._ring and frame.mono - self._ring[0][0] > self.pre_s:
            self._ring.popleft()
        for clip in list(self._open):
            clip.frames.append(jpeg)
            if frame.mono >= clip.until:
                self._open.remove(clip)
                self._writer.submit(clip)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of JPEG the ring buffer holds now (what ``pre_s`` costs in memory)."""
        return sum(len(jpeg) for _, jpeg in self._ring)

    def begin(self, name: str, mono: float) -> _Clip:
        """Start a clip named ``name`` (file name, ``.mp4``) at frame time ``mono``: the
        buffered ``pre_s`` seconds plus the next ``post_s``. Returns its handle (``path``,
        ``done`` set once written or dropped)."""
        clip = _Clip(
            self.directory / name, [im for _, im in self._ring], mono + self.post_s, self.fps
        )
        self._open.append(clip)
        return clip

    def flush(self) -> None:
        """Hand every open clip to the writer as it is (source ended)."""
        for clip in self._open:
            self._writer.submit(clip)
        self._open.clear()
