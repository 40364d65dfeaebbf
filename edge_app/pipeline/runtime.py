"""What the camera loops run with, and where they hand their events."""

from __future__ import annotations

__all__ = ["EventSink", "Runtime", "RuntimeHolder"]

from collections.abc import Callable
from dataclasses import dataclass

from edge_app.config import ConfigSnapshot, SnapshotHolder
from edge_app.domain import Event
from edge_app.vision.detector import Detector

EventSink = Callable[[Event], Event]
"""Stores an event durably and returns it with its ``seq`` (``EventIntake.accept``); raises
``EdgeAppError`` when it cannot."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the camera loops run with: one config snapshot and the detector that serves it."""

    snapshot: ConfigSnapshot
    detector: Detector


RuntimeHolder = SnapshotHolder[Runtime]
"""The runtime in force; the remote-config applier swaps it, the camera loops read it."""
