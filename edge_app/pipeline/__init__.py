"""The per-camera frame loop: source -> detector -> rules -> local actions -> outbox.

One ``CameraWorker`` per camera; the composition root runs each on its own thread. The loop is
the hot path: per frame it does the rate check, one ``detect`` call and the rule update, and
nothing else unless an event is raised.

A worker is built from its camera's config and its ``CameraParts`` (source, runtime holder,
event sink, stop event, clock, ...). Its detector and rules come from the ``RuntimeHolder``:
at the top of each frame the worker compares the holder's ``Runtime`` with the one it runs
and, when it changed, adopts the new one before the frame (rules, zones, fps, detector).
Adopting costs well under a frame: it builds a ``RuleEngine`` at most, the new detector was
loaded and test-run before the swap.
"""

from edge_app.pipeline.recent import RecentFrames
from edge_app.pipeline.runtime import EventSink, Runtime, RuntimeHolder
from edge_app.pipeline.stats import CameraStats
from edge_app.pipeline.worker import MAX_DETECT_ERRORS, CameraParts, CameraWorker

__all__ = [
    "MAX_DETECT_ERRORS",
    "CameraParts",
    "CameraStats",
    "CameraWorker",
    "EventSink",
    "RecentFrames",
    "Runtime",
    "RuntimeHolder",
]
