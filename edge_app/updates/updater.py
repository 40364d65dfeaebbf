"""The over-the-air model updater: ``ModelOffer`` in, ``UpdateResult`` out.

One offer at a time, on the caller's thread (the Jobs agent's): already running ->
``unchanged``; otherwise download (``edge_app.models.download``: allowed URL prefixes,
resumable, capped, verified), register in the local registry (pending; a version already
there with other bytes is refused), test-load, test-run on recent real frames of the cameras
next to the running model and measure their agreement (``edge_app.vision.agreement``); any
failure -> ``rejected`` and the running model never stopped. Then approve it, swap it in
through the ``RuntimeApplier`` at a frame boundary (the detector is already open, so the swap
costs no load) and watch the next frames: a failed ``detect`` -> switch back to the previous
detector (still open), mark the entry rejected, ``rolled_back``. Only a model that passed its
watch is persisted as last-good (through the shadow handler's local-change path when there is
one, so the shadow and a later delta agree): a power cut before that reboots into the old one.
"""

from __future__ import annotations

__all__ = ["ModelUpdater", "UpdateParts"]

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_app.clock import Clock
from edge_app.config import (
    AppConfig,
    DetectorConfig,
    LastGood,
    LastGoodStore,
    config_digest,
    merge_delta,
)
from edge_app.domain import Detections
from edge_app.errors import EdgeAppError
from edge_app.models import Catalog, Conventions, ModelStatus, Registry, default_model_dir
from edge_app.models.download import DownloadError, DownloadStats, TokenBucket, download
from edge_app.models.offer import FileOffer, ModelOffer, UpdateResult, UpdateState
from edge_app.models.registry import check_tflite
from edge_app.pipeline import CameraStats, RecentFrames, Runtime, RuntimeHolder
from edge_app.reconfigure import RuntimeApplier, blank_frame
from edge_app.remote import ConfigChange
from edge_app.updates.record import UpdateRecord
from edge_app.vision.agreement import match_detections
from edge_app.vision.detector import Detector, open_detector

log = logging.getLogger(__name__)

OpenModel = Callable[[DetectorConfig, Catalog | None], Detector]

_PERSIST_TIMEOUT_S = 60.0
"""How long the local-change path may take (the remote-config thread may be busy)."""
_REASON_MAX = 1000
"""Longest reason given back (characters): it becomes a job's status detail."""
_POLL_S = 0.005
"""Health watch polling interval (real time: the cameras run in real time)."""


@dataclass(frozen=True, slots=True)
class UpdateParts:
    """What the updater works with: the running ``live`` runtime and its ``applier``, the
    cameras' ``detector_lock``, their ``recent`` frames and ``cameras`` stats, the last-good
    ``store``, the shadow's ``config_change`` (None without remote config or status page),
    the ``catalog``, the ``clock`` (wall time of records) and ``on_record`` (each outcome,
    e.g. to the shadow's ``reported``); once ``stop`` is set (the app stops taking frames) an
    update in progress ends: a download stops (its part kept for a resume), a test run is
    refused, a health watch ends early. ``open_model`` is the seam a test replaces."""

    live: RuntimeHolder
    applier: RuntimeApplier
    detector_lock: Any
    recent: RecentFrames | None
    cameras: Callable[[], Mapping[str, CameraStats]]
    store: LastGoodStore
    config_change: ConfigChange | None
    catalog: Catalog | None
    clock: Clock
    on_record: Callable[[UpdateRecord], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    open_model: OpenModel = open_detector


class _RejectedError(Exception):
    """A check failed before the switch; ``agreement`` when it was measured; ``broken`` when
    the model itself failed (load, invoke): its registry entry is then marked rejected."""

    def __init__(
        self, reason: str, agreement: float | None = None, *, broken: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.agreement = agreement
        self.broken = broken


class ModelUpdater:
    """Implements ``ModelUpdates`` for one running app (``local`` is its local config)."""

    def __init__(self, local: AppConfig, parts: UpdateParts) -> None:
        self._local = local
        self._settings = local.model_updates
        self.parts = parts
        """What it works with (a test builds a second updater over them with another
        ``open_model``)."""
        self._model_dir = Path(local.detector.model_dir or default_model_dir())
        self._one = threading.Lock()
        self.last: UpdateRecord | None = None
        """The last offer's outcome (None before the first)."""

    # -- the protocol --------------------------------------------------------------------

    def update(
        self, offer: ModelOffer, *, origin: str, progress: Callable[[str], None] | None = None
    ) -> UpdateResult:
        """Fetch, check and switch to ``offer`` (see the module docstring). Never raises for
        a bad offer; the result says what failed."""
        note = progress or (lambda _: None)
        if not self._one.acquire(blocking=False):
            running = self.parts.live.current.detector.model
            why = "another model update is in progress; offer it again when it has finished"
            return UpdateResult(UpdateState.REJECTED, running, why)
        try:
            result = self._update(offer, origin, note)
        except Exception as exc:  # never raise for an offer: say what failed instead
            log.exception("model update %s from %s failed", offer.ref, origin)
            running = self.parts.live.current.detector.model
            result = UpdateResult(UpdateState.REJECTED, running, f"update failed: {exc}")
        finally:
            self._one.release()
        result = replace(result, reason=_one_line(result.reason))
        self._keep(offer, origin, result)
        return result

    # -- the flow ------------------------------------------------------------------------

    def _update(self, offer: ModelOffer, origin: str, note: Callable[[str], None]) -> UpdateResult:
        old = self.parts.live.current
        running = old.detector.model
        if (running.name, running.version) == (offer.name, offer.version) and (
            offer.sha256.startswith(running.sha256)
        ):
            return UpdateResult(UpdateState.UNCHANGED, running, "already running")
        figures: dict[str, float] = {}
        try:
            self._register(offer, origin, note, figures)
            detector, agreement = self._check(offer, old, note, figures)
        except _RejectedError as exc:
            log.warning("model update %s from %s rejected: %s", offer.ref, origin, exc.reason)
            return UpdateResult(UpdateState.REJECTED, running, exc.reason, exc.agreement, figures)
        self.parts.applier.retire(detector)  # from here on closed when the app stops
        registry = Registry(self._model_dir)
        registry.set_status(offer.name, offer.version, ModelStatus.APPROVED)
        note("switching")
        last = self.parts.store.load()
        started = time.perf_counter()
        config = _with_model(old.snapshot.config, offer.ref)
        self.parts.applier.apply(config, old.snapshot.remote_version or 0, detector=detector)
        figures["switch_s"] = time.perf_counter() - started
        log.info(
            "model %s switched in (%.1f ms, agreement %.3f on recent frames)",
            offer.ref,
            figures["switch_s"] * 1000,
            agreement if agreement is not None else float("nan"),
        )
        failure = self._watch(note, figures)
        if failure is None:
            # Only a model that passed its watch becomes what a restart runs: a power cut
            # during the watch reboots into the model that ran before.
            self._persist(offer.ref, last)
            return UpdateResult(UpdateState.SWITCHED, detector.model, "", agreement, figures)
        started = time.perf_counter()
        self.parts.applier.apply(
            _with_detector(self.parts.live.current.snapshot.config, old.snapshot.config.detector),
            old.snapshot.remote_version or 0,
            detector=old.detector,
        )
        figures["rollback_s"] = time.perf_counter() - started
        registry.set_status(offer.name, offer.version, ModelStatus.REJECTED)
        log.error("model %s rolled back to %s: %s", offer.ref, running.name, failure)
        return UpdateResult(UpdateState.ROLLED_BACK, running, failure, agreement, figures)

    def _register(
        self, offer: ModelOffer, origin: str, note: Callable[[str], None], figures: dict[str, float]
    ) -> None:
        """The offer in the registry (pending), downloaded unless that version is there."""
        registry = Registry(self._model_dir)
        try:
            existing = next(
                (
                    e
                    for e in registry.entries()
                    if (e.name, e.version) == (offer.name, offer.version)
                ),
                None,
            )
        except EdgeAppError as exc:
            raise _RejectedError(str(exc)) from exc
        if existing is not None:
            if existing.sha256 != offer.sha256:
                raise _RejectedError(
                    f"{offer.ref} is already registered with sha256 {existing.sha256[:12]}, the "
                    f"offer has {offer.sha256[:12]}: versions never change; offer the new file "
                    "under a new version"
                )
            if existing.status is ModelStatus.REJECTED:
                raise _RejectedError(f"{offer.ref} was rejected before (edge-app models list)")
            return
        downloads = self._model_dir / "downloads"
        stats = DownloadStats()
        started = time.perf_counter()
        try:
            model = self._fetch(offer, downloads, ".tflite", note, stats)
            labels = (
                self._fetch(offer.labels, downloads, ".labels.txt", None, stats)
                if offer.labels is not None
                else None
            )
        except EdgeAppError as exc:
            raise _RejectedError(f"download failed: {exc}") from exc
        figures["download_s"] = time.perf_counter() - started
        figures["download_bytes"] = stats.fetched
        figures["download_requests"] = stats.requests
        note("registering")
        try:
            check_tflite(model, hint="the offer must name a .tflite file")
            Registry(self._model_dir).add(
                model,
                offer.name,
                offer.version,
                sha256=offer.sha256,
                conventions=Conventions(labels=str(labels)) if labels is not None else None,
                lineage={
                    "source": {"url": offer.url, "sha256": offer.sha256, "bytes": offer.size},
                    "origin": origin,
                    "via": "over the air",
                },
            )
        except EdgeAppError as exc:
            raise _RejectedError(f"not registered: {exc}") from exc
        finally:
            for path in (model, labels):
                if path is not None:
                    path.unlink(missing_ok=True)  # the registry keeps its own copy

    def _fetch(
        self,
        offer: FileOffer,
        folder: Path,
        suffix: str,
        note: Callable[[str], None] | None,
        stats: DownloadStats,
    ) -> Path:
        s = self._settings
        shown = [-1]

        def progress(have: int, size: int) -> None:
            if self.parts.stop.is_set():
                raise DownloadError(
                    "the app is stopping: download stopped (the part is kept; offer it again "
                    "to resume)"
                )
            tenth = have * 10 // size
            if note is not None and tenth != shown[0]:
                shown[0] = tenth
                note(f"downloading {tenth * 10}%")

        bucket = TokenBucket(s.bandwidth_bytes_per_s) if s.bandwidth_bytes_per_s else None
        return download(
            offer.url,
            sha256=offer.sha256,
            size=offer.size,
            folder=folder,
            allowed=s.allows,
            max_bytes=s.max_bytes,
            timeout_s=s.timeout_s,
            retries=s.retries,
            bucket=bucket,
            suffix=suffix,
            progress=progress,
            stats=stats,
        )

    def _check(
        self,
        offer: ModelOffer,
        old: Runtime,
        note: Callable[[str], None],
        figures: dict[str, float],
    ) -> tuple[Detector, float | None]:
        """Open the new model and test-run it next to the running one; the open detector and
        the agreement, or ``_RejectedError``."""
        note("test-loading")
        config = _with_model(old.snapshot.config, offer.ref).detector
        try:
            detector = self.parts.open_model(config, self.parts.catalog)
        except Exception as exc:
            self._reject_entry(offer)
            raise _RejectedError(f"cannot load the model: {exc}") from exc
        try:
            agreement = self._test_run(detector, old.detector, note, figures)
        except _RejectedError as exc:
            detector.close()
            if exc.broken:
                self._reject_entry(offer)
            raise
        return detector, agreement

    def _test_run(
        self,
        new: Detector,
        running: Detector,
        note: Callable[[str], None],
        figures: dict[str, float],
    ) -> float | None:
        s = self._settings
        recent = self.parts.recent
        frames = recent.latest(s.test_frames) if recent is not None else []
        note(f"test-running on {len(frames)} recent frame(s)")
        started = time.perf_counter()
        if not frames:
            try:
                new.detect(blank_frame(new))
            except Exception as exc:
                raise _RejectedError(f"the model fails at invoke: {exc}", broken=True) from exc
            if s.agreement_floor > 0:
                raise _RejectedError(
                    "no recent camera frames to measure agreement on (are the cameras "
                    "running?); offer it again once they are"
                )
            return None
        pairs: list[tuple[Detections, Detections]] = []
        for frame in frames:
            if self.parts.stop.is_set():
                raise _RejectedError("the app is stopping: test run not finished")
            try:
                got = new.detect(frame.image)
            except Exception as exc:
                raise _RejectedError(f"the model fails at invoke: {exc}", broken=True) from exc
            with self.parts.detector_lock:  # the running interpreter serves the cameras too
                ref = running.detect(frame.image)
            pairs.append((ref, got))
        measured = match_detections(pairs)
        figures["test_run_s"] = time.perf_counter() - started
        figures["test_frames"] = len(frames)
        # 1.0 with none on either side: say how much there was to agree on
        figures["reference_detections"] = measured.source_detections
        value = measured.agreement
        if value < s.agreement_floor:
            raise _RejectedError(
                f"agreement {value:.3f} with the running model on {len(frames)} recent frames "
                f"({measured.matched} matched, {measured.missed} missed, {measured.extra} extra) "
                f"is below model_updates.agreement_floor {s.agreement_floor}",
                value,
            )
        return value

    def _watch(self, note: Callable[[str], None], figures: dict[str, float]) -> str | None:
        """Wait until the cameras have processed ``watch_frames`` frames on the new model
        (or ``watch_timeout_s`` passed); the failure, or None."""
        s = self._settings
        if s.watch_frames == 0:
            return None
        note(f"watching {s.watch_frames} frames")
        base = {name: (c.processed, c.detect_errors) for name, c in self.parts.cameras().items()}
        started = time.monotonic()
        deadline = started + s.watch_timeout_s
        stop = self.parts.stop
        while True:
            done = failed = 0
            last_error = ""
            for name, c in self.parts.cameras().items():
                processed, errors = base.get(name, (0, 0))
                done += c.processed - processed
                if c.detect_errors > errors:
                    failed += c.detect_errors - errors
                    last_error = last_error or c.last_detect_error
            if failed:
                figures["watch_s"] = time.monotonic() - started
                return (
                    f"the new model failed at invoke on {failed} frame(s) within its health "
                    f"watch ({last_error})"
                )
            if done >= s.watch_frames or time.monotonic() >= deadline or stop.is_set():
                figures["watch_s"] = time.monotonic() - started
                figures["watch_frames"] = done
                return None
            stop.wait(_POLL_S)

    # -- persisting ----------------------------------------------------------------------

    def _persist(self, ref: str, last: LastGood | None) -> None:
        """Make the switched model what a restart runs (the last-good overlay)."""
        state = {"detector": {"model": ref}}
        change = self.parts.config_change
        if change is not None:
            try:
                outcome = change(state, _PERSIST_TIMEOUT_S)
            except (TimeoutError, EdgeAppError) as exc:
                log.error("model change %s in force but not persisted: %s", state, exc)
                return
            if outcome.status != "applied":
                log.error(
                    "model change %s in force but not persisted: %s",
                    state,
                    "; ".join(str(e) for e in outcome.errors),
                )
            return
        # No shadow handler: write the overlay ourselves.
        try:
            current = self.parts.live.current.snapshot
            desired = merge_delta(last.desired if last is not None else {}, state)
            version = last.version if last is not None else current.config.version
            self.parts.store.save(LastGood(desired, version, config_digest(current.config)))
        except EdgeAppError as exc:
            log.error("model change %s in force but not persisted: %s", state, exc)

    def _reject_entry(self, offer: ModelOffer) -> None:
        """A registered offer that failed its checks is marked rejected (refused everywhere,
        kept for its lineage)."""
        try:
            Registry(self._model_dir).set_status(offer.name, offer.version, ModelStatus.REJECTED)
        except EdgeAppError as exc:
            log.warning("could not mark %s rejected: %s", offer.ref, exc)

    def _keep(self, offer: ModelOffer, origin: str, result: UpdateResult) -> None:
        record = UpdateRecord(offer.ref, origin, self.parts.clock.time(), result)
        self.last = record
        if self.parts.on_record is not None:
            try:
                self.parts.on_record(record)
            except Exception:
                log.exception("model update outcome not reported")


def _one_line(reason: str) -> str:
    """A reason on one line (loader errors may span several), at most ``_REASON_MAX``."""
    line = " ".join(reason.split())
    return line if len(line) <= _REASON_MAX else line[: _REASON_MAX - 3] + "..."


def _with_model(config: AppConfig, ref: str) -> AppConfig:
    return _with_detector(config, config.detector.model_copy(update={"model": ref}))


def _with_detector(config: AppConfig, detector: DetectorConfig) -> AppConfig:
    return config.model_copy(update={"detector": detector})
