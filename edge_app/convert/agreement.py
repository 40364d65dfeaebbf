"""How closely a converted model follows its source: re-exported from
``edge_app.vision.agreement``, where the pure numpy part lives so the daemon's over-the-air
updater can measure a new model against the running one without importing the converter."""

from __future__ import annotations

from edge_app.vision.agreement import (
    MATCH_IOU,
    Agreement,
    OutputError,
    match_detections,
    output_error,
)

__all__ = ["MATCH_IOU", "Agreement", "OutputError", "match_detections", "output_error"]
