"""Noticing a model that sees nothing: the usual sign that it is fed the wrong way.

A model fed with the wrong channel order, pixel range or letterbox still loads and runs; it
just scores everything near zero, and the appliance raises no event, silently. A working
detector, in contrast, nearly always has some weak candidate (a score of a few percent)
somewhere in a frame that has motion. So a detector first decodes at ``SILENT_SCORE`` (or
its threshold if lower) and keeps only what reaches its threshold; once a candidate reaches
``SILENT_SCORE`` it is settled and decodes at its threshold alone; after ``SILENT_FRAMES``
detected frames (the camera loops detect on frames with motion) without one, it warns once,
naming the likely causes and ``edge-app models probe``, and stops watching.
"""

from __future__ import annotations

__all__ = ["SILENT_FRAMES", "SILENT_SCORE", "SilenceWatch"]

import logging

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger("edge_app.vision")

SILENT_SCORE = 0.05
"""A candidate at least this confident shows that the model responds to its input."""

SILENT_FRAMES = 200
"""Detected frames without such a candidate before the warning."""


class SilenceWatch:
    """One per loaded model; not thread-safe (the detector's caller thread only)."""

    def __init__(self, model: str, path: str, fmt: str, frames: int = SILENT_FRAMES) -> None:
        self._model, self._path, self._format = model, path, fmt
        self._frames = frames
        self._quiet: int | None = 0  # frames without a candidate; None once settled

    def decode_threshold(self, threshold: float) -> float:
        """The score to decode at this frame: lower while still watching."""
        return threshold if self._quiet is None else min(threshold, SILENT_SCORE)

    def observe(self, scores: NDArray[np.float32], threshold: float) -> NDArray[np.bool_] | None:
        """Count a frame decoded at ``decode_threshold``; returns the mask of candidates that
        reach ``threshold`` (None: keep them all, nothing below it was decoded)."""
        if self._quiet is None:
            return None
        if len(scores) and float(scores.max()) >= SILENT_SCORE:
            self._quiet = None
        else:
            self._quiet += 1
            if self._quiet >= self._frames:
                self._quiet = None
                log.warning(
                    "model %s has found no candidate scoring %.2f or more in %d frames: it is "
                    "probably fed the wrong way (channel order, input range, letterbox "
                    "alignment) or has the wrong output format (now %s). Find the conventions "
                    "that work with `edge-app models probe %s IMAGE_OR_VIDEO --write`. Logged "
                    "once per model load.",
                    self._model,
                    SILENT_SCORE,
                    self._frames,
                    self._format,
                    self._path,
                    extra={"model": self._model},
                )
        return scores >= threshold
