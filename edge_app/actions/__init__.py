"""Local actions taken at once, with or without a network, and local retention of their files."""

from edge_app.actions.clips import ClipRecorder, ClipWriter, ram_scratch
from edge_app.actions.preview import Preview, PreviewSlot, annotate
from edge_app.actions.retention import (
    GRACE_S,
    PendingFn,
    PruneResult,
    Retention,
    prune_clips,
    prune_snapshots,
)
from edge_app.actions.snapshot import SnapshotWriter, draw_detections

__all__ = [
    "GRACE_S",
    "ClipRecorder",
    "ClipWriter",
    "PendingFn",
    "Preview",
    "PreviewSlot",
    "PruneResult",
    "Retention",
    "SnapshotWriter",
    "annotate",
    "draw_detections",
    "prune_clips",
    "prune_snapshots",
    "ram_scratch",
]
