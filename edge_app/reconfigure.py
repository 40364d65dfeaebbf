"""Putting a validated remote config into force: the ``Applier`` the shadow handler calls.

The running config is a ``Runtime`` (config snapshot + detector) in a ``RuntimeHolder``. A new
config builds a new runtime first, loading and test-running a new model when the detector
section changed, and only then swaps it in, between two frames of every camera (under the
shared detector lock); each camera loop adopts it at the top of its next frame. Anything that
fails before the swap changes nothing.
"""

from __future__ import annotations

__all__ = ["RuntimeApplier", "blank_frame"]

import logging
import threading
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from edge_app.config import AppConfig, ConfigSnapshot
from edge_app.domain import ModelRef
from edge_app.errors import ModelError
from edge_app.models import Catalog
from edge_app.pipeline import Runtime, RuntimeHolder
from edge_app.vision.detector import Detector, open_detector
from edge_app.vision.fairlock import FairLock

log = logging.getLogger(__name__)


class RuntimeApplier:
    """Swaps validated configs into ``live`` (the remote ``Applier`` protocol). Thread-safe.

    ``detector_lock`` is the cameras' shared detector lock (held between their frames);
    ``retire`` takes each replaced model's detector (a camera may still be mid-frame on it, so
    the owner closes it at stop); ``set_batching`` passes new uplink batch bounds on, if any.
    """

    def __init__(
        self,
        live: RuntimeHolder,
        *,
        catalog: Catalog | None,
        detector_lock: FairLock,
        retire: Callable[[Detector], object],
        set_batching: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self._live = live
        self._catalog = catalog
        self._detector_lock = detector_lock
        self._retire = retire
        self._set_batching = set_batching
        self._lock = threading.Lock()  # one apply at a time

    def retire(self, detector: Detector) -> None:
        """Have ``detector`` closed when the app stops (a camera may be mid-frame on it)."""
        self._retire(detector)

    def current(self) -> ConfigSnapshot:
        return self._live.current.snapshot

    def model(self) -> ModelRef:
        return self._live.current.detector.model

    def apply(
        self,
        config: AppConfig,
        remote_version: int,
        *,
        detector: Detector | None = None,
        source: str = "remote",
    ) -> ConfigSnapshot:
        """Build the new runtime, then swap it in. Raises ``ModelError`` (nothing changed) if a
        new model cannot be loaded or fails its test run.

        ``detector``, if given, is an open, tested detector of ``config``'s model to run
        instead of loading one (the over-the-air updater's, already checked on real frames;
        or the previous one, kept open for a rollback); its caller ``retire``s it."""
        with self._lock:
            old = self._live.current
            if detector is not None:
                pass
            elif needs_new_detector(old.snapshot.config, config):
                detector = load_and_test(config, self._catalog)
                self._retire(detector)
            else:
                detector = old.detector
            snapshot = ConfigSnapshot.of(config, source, remote_version)
            with self._detector_lock:  # between two frames of every camera
                threshold = config.detector.score_threshold
                if detector.score_threshold != threshold:
                    detector.set_score_threshold(threshold)
                self._live.swap(Runtime(snapshot, detector))
            if self._set_batching is not None:
                b = config.uplink.batch
                self._set_batching(b.max_events, b.max_bytes, b.max_wait_s)
        return snapshot


def needs_new_detector(old: AppConfig, new: AppConfig) -> bool:
    """Whether ``new`` needs another detector: anything in the detector section changed but
    the score threshold (set on the live detector)."""
    a, b = old.detector, new.detector
    return a.model_copy(update={"score_threshold": 0.0}) != b.model_copy(
        update={"score_threshold": 0.0}
    )


def blank_frame(detector: Detector) -> NDArray[np.uint8]:
    """A black frame of the detector's input size: what a test run without camera frames
    invokes the model on."""
    width, height = detector.input_size
    return np.zeros((height, width, 3), np.uint8)


def load_and_test(config: AppConfig, catalog: Catalog | None) -> Detector:
    """Open the configured model and run it once on a blank frame; ``ModelError`` if either
    fails (the detector is closed again)."""
    detector = open_detector(config.detector, catalog)
    try:
        detector.detect(blank_frame(detector))
    except Exception as exc:
        detector.close()
        raise ModelError(f"model {config.detector.model!r} failed its test run: {exc}") from exc
    log.info("model %s loaded and test-run for remote config", detector.model.name)
    return detector
