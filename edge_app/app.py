"""Composition root: builds every part from the config, starts and stops the threads.

Nothing else in edge_app starts long-running threads (sources own their reader thread, which
lives and dies with ``frames()``; the clip writer owns its thread). ``start`` builds the parts
(``edge_app.builder``) and then starts, in this order: the MQTT connection, the drain thread,
telemetry, the retention thread, the remote-config and jobs threads and the camera threads.
Every part registers its close, and every thread and connection its stop, on one ``ExitStack``
the moment it exists, so a start that fails at any step stops and closes exactly what it had
started, and ``stop`` unwinds the same stack. The order of that unwinding is the shutdown
contract of the no-loss promise: stop taking frames, let the camera loops finish the frame in
hand and close their episodes (those events are committed), stop the jobs agent (a job in hand
finishes first), remote config and retention, end the open health conditions (``end_reason:
stopped``, committed too), keep delivering for ``uplink.flush_timeout_s``, stop telemetry (its
last minute is stored), the drain and the connection, then close the sources, the detectors,
the lanes and last the store.

Configuration in force is ``local file + last-good overlay`` at boot, then whatever the named
shadow ``edge-config`` changes (``edge_app.remote``), config jobs included (they take the
shadow's path). It lives in one place: the ``Runtime`` (config snapshot + detector) in the
``RuntimeHolder`` (``EdgeApp.runtime``), which ``reconfigure.RuntimeApplier`` swaps and each
camera loop adopts at the top of its next frame; ``/status``, the shadow's ``reported``
document and new events all read it there.
"""

from __future__ import annotations

__all__ = ["START_STEPS", "AppStats", "EdgeApp"]

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Self

from edge_app.actions import Retention
from edge_app.builder import AppParts, Seams, UplinkParts, build_app
from edge_app.clock import Clock, SystemClock
from edge_app.config import AppConfig, ConfigSnapshot
from edge_app.models import Catalog
from edge_app.outbox import Outbox
from edge_app.pipeline import CameraStats, Runtime
from edge_app.remote import Outcome
from edge_app.telemetry import DiskUsage, sd_notify
from edge_app.telemetry.wiring import Telemetry
from edge_app.ui import LiveView, StatusPages, UiSources, ZoneEditor
from edge_app.updates import ModelUpdater
from edge_app.uplink import Transport
from edge_app.vision.detector import Detector

log = logging.getLogger(__name__)

START_STEPS = (
    # building (edge_app.builder), in order; the uplink steps only with uplink.enabled
    "health token",
    "data dir",
    "encryption key",
    "outbox",
    "config",
    "detector",
    "uplink lanes",
    "transport",
    "telemetry",
    "cameras",
    "remote config",
    # starting
    "connect",
    "drain thread",
    "telemetry start",
    "retention thread",
    "remote-config thread",
    "jobs thread",
    "camera threads",
)
"""The steps of ``EdgeApp.start``, each announced to ``on_start_step`` before it runs."""


@dataclass(frozen=True, slots=True)
class AppStats:
    """A snapshot of the app's counters."""

    cameras: dict[str, CameraStats]
    outbox_depth: int
    last_seq: int
    uplink_connected: bool
    batches_sent: int
    events_sent: int

    @property
    def frames(self) -> int:
        return sum(c.processed for c in self.cameras.values())

    @property
    def detections(self) -> int:
        return sum(c.detections for c in self.cameras.values())

    @property
    def events(self) -> int:
        return sum(c.events for c in self.cameras.values())


class EdgeApp:
    """The appliance. Use as a context manager, or ``start()`` ... ``stop()``."""

    def __init__(
        self,
        config: AppConfig,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        detector: Detector | None = None,
        catalog: Catalog | None = None,
        disk_usage: DiskUsage | None = None,
        notify: Callable[[str], bool] = sd_notify,
        watchdog_s: float | None = None,
    ) -> None:
        """``config`` is the local file. The rest are seams (``builder.Seams``): ``disk_usage``,
        ``notify`` (sd_notify) and ``watchdog_s`` (default: from ``$WATCHDOG_USEC``) serve the
        tests of health, the systemd watchdog and the start timeout extended while a damaged
        outbox is salvaged."""
        self._config = config
        self._seams = Seams(
            clock or SystemClock(), transport, detector, catalog, disk_usage, notify, watchdog_s
        )
        self._parts: AppParts | None = None
        self._running: ExitStack | None = None  # set while started: unwinding it stops the app
        self._cameras: list[threading.Thread] = []
        self._flush_s = 0.0  # a failed start does not wait for delivery; stop() sets it

    # -- what runs ---------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The config snapshot and detector in force now (after a remote change: the new ones)."""
        return self._built().live.current

    @property
    def snapshot(self) -> ConfigSnapshot:
        """The configuration in force now, with its source and remote version."""
        if self._parts is None:
            return ConfigSnapshot.of(self._config, "file", None)
        return self._parts.live.current.snapshot

    @property
    def outbox(self) -> Outbox:
        """The durable store (open while the app runs)."""
        return self._built().outbox

    @property
    def telemetry(self) -> Telemetry | None:
        """Registry, health, HTTP endpoint and watchdog; None unless the app is running."""
        return self._parts.telemetry if self._parts is not None and self._running else None

    @property
    def model_updates(self) -> ModelUpdater:
        """The over-the-air model updater (``ModelUpdates.update``: blocking, one offer at a
        time, never raises for a bad offer); the Jobs agent calls it. Needs a started app."""
        return self._built().model_updates

    @property
    def retention(self) -> Retention | None:
        """Local retention of snapshots and clips; None unless the app is running."""
        return self._parts.retention if self._parts is not None and self._running else None

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Build everything and start the threads. Raises on a bad model, source or store,
        and (``ConfigError``) on a missing or unsafe health endpoint token; whatever had been
        opened or started by then is stopped and closed again."""
        if self._running is not None:
            raise RuntimeError("EdgeApp.start(): the app is already running; stop() it first")
        self._flush_s = 0.0
        self._parts = None  # a new start builds new parts
        with ExitStack() as stack:
            self._parts = build_app(
                self._config,
                self._seams,
                stack,
                step=self.on_start_step,
                on_config_outcome=self.on_config_outcome,
            )
            self._start(self._parts, stack)
            self._running = stack.pop_all()
        runtime = self._parts.live.current
        log.info(
            "edge-app started: device %s, %d camera(s), model %s via %s",
            self._config.device.thing_name,
            len(self._parts.workers),
            runtime.detector.model.name,
            runtime.detector.runtime_name,
        )

    def _start(self, parts: AppParts, stack: ExitStack) -> None:
        """Start the connection and the threads; each registers its stop on ``stack`` in the
        order that makes unwinding it the shutdown contract (see the module docstring)."""
        step, up = self.on_start_step, parts.uplink
        if up is not None:
            step("connect")
            up.shadow.attach()  # before connect: the first CONNACK already asks for the shadow
            up.jobs.attach()  # ... and for the next job
            stack.callback(up.transport.disconnect)  # also stops a connect that failed half-way
            up.transport.connect()
            step("drain thread")
            _start_thread(stack, up.drain.run, "uplink-drain", up.drain_stop)
        step("telemetry start")
        stack.callback(parts.telemetry.stop)  # also stops a start that failed half-way
        if up is not None:
            stack.callback(self._flush, up, parts.outbox)  # once every producer has stopped
        health = parts.health_events
        if health is not None:
            # The telemetry thread feeds it from its start: the open conditions end before
            # the last delivery (and in a start that fails half-way too).
            stack.callback(health.close)
        parts.telemetry.start(
            status=self._status,
            on_health=health.observe if health else None,
            pages=self._pages(parts),
        )
        step("retention thread")
        _start_thread(stack, parts.retention.run, "retention", parts.retention_stop)
        if up is not None:
            step("remote-config thread")
            _start_thread(stack, up.shadow.run, "remote-config", up.shadow_stop)
            step("jobs thread")
            _start_thread(stack, up.jobs.run, "jobs", up.jobs_stop)
        step("camera threads")
        self._cameras = []
        for worker in parts.workers:
            thread = _start_thread(stack, worker.run, f"camera-{worker.camera}", parts.stop_capture)
            self._cameras.append(thread)

    def _pages(self, parts: AppParts) -> StatusPages | None:
        """The local status page over the built parts (None when ``ui`` is off)."""
        ui = parts.ui
        if ui is None:
            return None
        change = parts.config_change
        # the editor waits for the config thread within the HTTP answer's own deadline
        wait_s = max(1.0, self._config.health.request_timeout_s / 2)
        sources = UiSources(
            config=self._config,
            live=parts.live,
            journal=ui.journal,
            outbox=parts.outbox,
            accept=parts.intake.accept,
            lanes=ui.lanes,
            status=self._status,
            zones=ZoneEditor(parts.live, change, timeout_s=wait_s) if change else None,
            sealer=ui.sealer,
            clock=self._seams.clock,
        )
        return StatusPages(sources, LiveView(ui.slots, fps=self._config.ui.live_fps))

    def _flush(self, up: UplinkParts, outbox: Outbox) -> None:
        """Deliver what is stored, for up to ``stop``'s deadline (none after a failed start)."""
        if not up.drain.flush(self._flush_s):
            log.warning(
                "stopping with %d event(s) not yet delivered; they stay in the outbox",
                outbox.stats().depth,
            )

    def request_stop(self) -> None:
        """Stop taking frames (signal-safe); ``stop()`` does the rest."""
        if self._parts is not None:
            self._parts.stop_capture.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every camera loop to end (file sources end); True if they all have."""
        for thread in self._cameras:
            thread.join(timeout)
        return not any(t.is_alive() for t in self._cameras)

    def stop(self, flush_timeout_s: float | None = None) -> None:
        """Stop capture, deliver what is stored within the deadline (default
        ``uplink.flush_timeout_s``), stop and close everything. Idempotent."""
        running, self._running = self._running, None
        if running is None:
            return
        self._flush_s = (
            self._config.uplink.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
        )
        running.close()
        log.info("edge-app stopped")

    # -- hooks -------------------------------------------------------------------------------

    def on_start_step(self, step: str) -> None:
        """Called before each step of ``start`` (``START_STEPS``; a hook for tests: raising
        here fails the start at that step)."""

    def on_config_outcome(self, outcome: Outcome) -> None:
        """Called on the remote-config thread after each shadow decision (a hook for tests)."""

    # -- counters ----------------------------------------------------------------------------

    def camera_stats(self) -> dict[str, CameraStats]:
        """Each camera loop's live counters, without touching the outbox (cheap to poll)."""
        return {w.camera: w.stats for w in self._built().workers}

    def stats(self) -> AppStats:
        parts = self._built()
        outbox = parts.outbox.stats()
        up = parts.uplink
        drain = up.drain.stats() if up is not None else None
        return AppStats(
            cameras=self.camera_stats(),
            outbox_depth=outbox.depth,
            last_seq=outbox.last_seq,
            uplink_connected=up is not None and up.transport.is_connected,
            batches_sent=drain.batches_sent if drain else 0,
            events_sent=drain.events_sent if drain else 0,
        )

    def _status(self) -> dict[str, object]:
        """The body of ``/status``: what runs now (model and config version in force)."""
        runtime = self.runtime
        stats = self.stats()
        return {
            "device": self._config.device.thing_name,
            "config_version": runtime.snapshot.config.version,
            "model": runtime.detector.model.to_json(),
            "model_update": self._last_update(),
            "cameras": {
                name: {"frames": c.frames, "processed": c.processed, "events": c.events}
                for name, c in stats.cameras.items()
            },
            "outbox_depth": stats.outbox_depth,
            "last_seq": stats.last_seq,
            "uplink_connected": stats.uplink_connected,
            "batches_sent": stats.batches_sent,
        }

    def _last_update(self) -> dict[str, object] | None:
        last = self._built().model_updates.last
        return last.to_json() if last is not None else None

    def _built(self) -> AppParts:
        if self._parts is None:
            raise RuntimeError("EdgeApp is not started: call start() first")
        return self._parts

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_thread(
    stack: ExitStack, target: Callable[[], None], name: str, stop: threading.Event
) -> threading.Thread:
    """Start ``target`` on a thread named ``name``; from then on ``stack`` sets ``stop`` and
    joins it when unwound."""
    thread = threading.Thread(target=target, name=name)
    thread.start()
    stack.callback(_stop_thread, thread, stop)
    return thread


def _stop_thread(thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    thread.join()
