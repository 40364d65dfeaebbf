"""A directory of still images, read in name order and stamped at a nominal rate."""

from __future__ import annotations

__all__ = ["IMAGE_SUFFIXES", "ImageDirSource"]

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2

from edge_app.clock import Clock
from edge_app.domain import Frame, as_image
from edge_app.errors import SourceError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class ImageDirSource:
    """Every image of a directory once; unreadable files are skipped, logged and counted."""

    def __init__(
        self,
        path: Path,
        camera: str,
        *,
        clock: Clock,
        fps: float = 1.0,
        resize: tuple[int, int] | None = None,
    ) -> None:
        if path.exists() and not path.is_dir():
            raise SourceError(
                f"{path} is a file, not a directory; give the folder that holds the images "
                "(for a video file use source type: file)"
            )
        if not path.is_dir():
            raise SourceError(f"image directory not found: {path}")
        self.camera = camera
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(
                f"no images in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self._clock = clock
        self._fps = fps
        self._resize = resize
        self.unreadable = 0

    @property
    def dropped(self) -> int:
        return self.unreadable

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        t0_mono, t0_wall = self._clock.monotonic(), self._clock.time()
        index = 0
        for file in self.files:
            if stop.is_set():
                return
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                self.unreadable += 1
                log.warning("skipping %s: not a readable image", file)
                continue
            if self._resize is not None:
                image = cv2.resize(image, self._resize, interpolation=cv2.INTER_AREA)
            offset = index / self._fps
            yield Frame(self.camera, index, t0_mono + offset, t0_wall + offset, as_image(image))
            index += 1

    def close(self) -> None:
        """Nothing is held open between frames."""
