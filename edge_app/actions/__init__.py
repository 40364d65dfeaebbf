"""Local actions taken at once, with or without a network."""

from edge_app.actions.clips import ClipRecorder, ClipWriter, prune, ram_scratch
from edge_app.actions.snapshot import SnapshotWriter, draw_detections

__all__ = [
    "ClipRecorder",
    "ClipWriter",
    "SnapshotWriter",
    "draw_detections",
    "prune",
    "ram_scratch",
]
