"""Build the ``FrameSource`` a camera's config asks for (explicit registry by ``type``)."""

from __future__ import annotations

__all__ = ["open_source"]

from edge_app.clock import Clock
from edge_app.config import (
    CameraConfig,
    FileSourceConfig,
    ImageDirSourceConfig,
    UrlSourceConfig,
    UsbSourceConfig,
)
from edge_app.sources.base import FrameSource
from edge_app.sources.images import ImageDirSource
from edge_app.sources.live import LiveSource
from edge_app.sources.video import VideoFileSource


def open_source(camera: CameraConfig, clock: Clock) -> FrameSource:
    """Open the camera's source; raises ``SourceError`` when a file cannot be read."""
    src = camera.source
    resize = camera.resize
    match src:
        case FileSourceConfig():
            return VideoFileSource(
                src.path,
                camera.name,
                clock=clock,
                realtime=src.realtime,
                speed=src.speed,
                loop=src.loop,
                resize=resize,
                start_s=src.start_s,
            )
        case ImageDirSourceConfig():
            return ImageDirSource(src.path, camera.name, clock=clock, fps=src.fps, resize=resize)
        case UsbSourceConfig():
            return LiveSource(src.index, camera.name, clock=clock, resize=resize)
        case UrlSourceConfig():
            return LiveSource(src.url, camera.name, clock=clock, resize=resize)
