"""Frame sources: video files, live cameras and streams, image directories."""

from edge_app.sources.base import FramePreparer, FrameSource, PreparesFrames
from edge_app.sources.factory import open_source
from edge_app.sources.images import ImageDirSource
from edge_app.sources.live import LiveSource
from edge_app.sources.video import VideoFileSource, open_video

__all__ = [
    "FramePreparer",
    "FrameSource",
    "ImageDirSource",
    "LiveSource",
    "PreparesFrames",
    "VideoFileSource",
    "open_source",
    "open_video",
]
