"""Local actions taken at once, with or without a network."""

from edge_app.actions.snapshot import SnapshotWriter, draw_detections

__all__ = ["SnapshotWriter", "draw_detections"]
