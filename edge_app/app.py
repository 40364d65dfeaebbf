"""Composition root: builds every part from the config, starts and stops the threads.

Nothing else in edge_app starts long-running threads (sources own their reader thread, which
lives and dies with ``frames()``). Shutdown order matters for the no-loss promise: stop taking
frames, let the camera loops finish the frame in hand and close their episodes (those events are
committed), then keep delivering for ``uplink.flush_timeout_s``, then close the store.
"""

from __future__ import annotations

__all__ = ["AppStats", "EdgeApp"]

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from edge_app.actions import SnapshotWriter
from edge_app.clock import Clock, SystemClock
from edge_app.config import AppConfig
from edge_app.domain import Event
from edge_app.outbox import Outbox
from edge_app.pipeline import CameraStats, CameraWorker
from edge_app.sources import open_source
from edge_app.telemetry import DiskUsage, sd_notify
from edge_app.telemetry.wiring import Telemetry
from edge_app.uplink import DrainLoop, MqttTransport, Transport, status_payload
from edge_app.vision.detector import Detector, open_detector
from edge_app.vision.rules import EventContext, RuleEngine

log = logging.getLogger(__name__)


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
        disk_usage: DiskUsage | None = None,
        notify: Callable[[str], bool] = sd_notify,
        watchdog_s: float | None = None,
    ) -> None:
        """``disk_usage``, ``notify`` (sd_notify) and ``watchdog_s`` (default: from
        ``$WATCHDOG_USEC``) are seams for tests of health and the systemd watchdog."""
        self.config = config
        self._disk_usage = disk_usage
        self._notify = notify
        self._watchdog_s = watchdog_s
        self.telemetry: Telemetry | None = None
        self._clock = clock or SystemClock()
        self._transport = transport
        self._detector = detector
        self._stop_capture = threading.Event()
        self._stop_uplink = threading.Event()
        self._resources = ExitStack()
        self._workers: list[CameraWorker] = []
        self._threads: list[threading.Thread] = []
        self._drain: DrainLoop | None = None
        self._drain_thread: threading.Thread | None = None
        self._started = False

    @property
    def status_topic(self) -> str:
        return f"{self.config.topic_prefix}/status"

    def start(self) -> None:
        """Open everything and start the threads. Raises on a bad model, source or store."""
        cfg = self.config
        try:
            cfg.device.data_dir.mkdir(parents=True, exist_ok=True)
            self.outbox = self._resources.enter_context(
                Outbox(
                    cfg.outbox_path,
                    clock=self._clock,
                    device=cfg.device.thing_name,
                    max_bytes=cfg.outbox.max_bytes,
                    max_age_s=cfg.outbox.max_age_days * 86400,
                )
            )
            detector = self._detector or open_detector(cfg.detector)
            if self._detector is None:
                self._resources.callback(detector.close)
            self.detector = detector
            ctx = EventContext(cfg.device.thing_name, detector.model, cfg.version)
            snapshots = SnapshotWriter(cfg.device.data_dir / "snapshots")
            lock = threading.Lock()
            for camera in cfg.cameras:
                source = open_source(camera, self._clock)
                self._resources.callback(source.close)
                worker = CameraWorker(
                    source,
                    detector,
                    RuleEngine(camera, cfg.rules, ctx),
                    self._store,
                    stop=self._stop_capture,
                    fps=camera.fps,
                    snapshots=snapshots,
                    detector_lock=lock,
                )
                self._workers.append(worker)
            if cfg.uplink.enabled:
                self._start_uplink()
            self.telemetry = Telemetry(
                cfg,
                clock=self._clock,
                cameras=lambda: {w.camera: w.stats for w in self._workers},
                outbox=self.outbox.stats,
                drain=lambda: self._drain.stats() if self._drain is not None else None,
                transport=self._transport if cfg.uplink.enabled else None,
                disk_usage=self._disk_usage,
                notify=self._notify,
                watchdog_s=self._watchdog_s,
            )
            self._resources.callback(self.telemetry.lane.close)
        except BaseException:
            self._resources.close()
            raise
        for worker in self._workers:
            thread = threading.Thread(target=worker.run, name=f"camera-{worker.camera}")
            thread.start()
            self._threads.append(thread)
        self.telemetry.start(status=self._status)
        self._started = True
        log.info(
            "edge-app started: device %s, %d camera(s), model %s via %s",
            cfg.device.thing_name,
            len(self._workers),
            detector.model.name,
            getattr(detector, "runtime_name", "?"),
        )

    def _start_uplink(self) -> None:
        up = self.config.uplink
        if self._transport is None:
            self._transport = MqttTransport(
                up.host,
                up.port,
                client_id=up.client_id or self.config.device.thing_name,
                tls=up.tls,
                keepalive_s=up.keepalive_s,
                will=(self.status_topic, status_payload("offline")),
                reconnect_min_s=up.reconnect.min_s,
                reconnect_max_s=up.reconnect.max_s,
                inflight=up.inflight,
            )
        self._drain = DrainLoop(
            self.outbox,
            self._transport,
            topic=f"{self.config.topic_prefix}/events",
            clock=self._clock,
            max_events=up.batch.max_events,
            max_bytes=up.batch.max_bytes,
            max_wait_s=up.batch.max_wait_s,
            stop=self._stop_uplink,
        )
        self._transport.connect()
        self._drain_thread = threading.Thread(target=self._drain.run, name="uplink-drain")
        self._drain_thread.start()

    def _status(self) -> dict[str, object]:
        stats = self.stats()
        return {
            "device": self.config.device.thing_name,
            "config_version": self.config.version,
            "model": self.detector.model.name,
            "cameras": {
                name: {"frames": c.frames, "processed": c.processed, "events": c.events}
                for name, c in stats.cameras.items()
            },
            "outbox_depth": stats.outbox_depth,
            "last_seq": stats.last_seq,
            "uplink_connected": stats.uplink_connected,
            "batches_sent": stats.batches_sent,
        }

    def _store(self, event: Event) -> Event:
        stored = self.outbox.enqueue(event)
        if self.telemetry is not None:  # rare path (one call per event), not per frame
            self.telemetry.registry.counter(
                "Events", "Count", "Events raised", rule=event.rule, severity=event.severity.value
            ).inc()
        if self._drain is not None:
            self._drain.notify()
        return stored

    def request_stop(self) -> None:
        """Stop taking frames (signal-safe); ``stop()`` does the rest."""
        self._stop_capture.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every camera loop to end (file sources end); True if they all have."""
        for thread in self._threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def stats(self) -> AppStats:
        outbox = self.outbox.stats()
        drain = self._drain.stats() if self._drain is not None else None
        return AppStats(
            cameras={w.camera: w.stats for w in self._workers},
            outbox_depth=outbox.depth,
            last_seq=outbox.last_seq,
            uplink_connected=bool(self._transport and self._transport.is_connected),
            batches_sent=drain.batches_sent if drain else 0,
            events_sent=drain.events_sent if drain else 0,
        )

    def stop(self, flush_timeout_s: float | None = None) -> None:
        """Stop capture, deliver what is stored within the deadline, close everything."""
        if not self._started:
            return
        self._started = False
        self._stop_capture.set()
        for thread in self._threads:
            thread.join()
        if self._drain is not None and self._transport is not None:
            deadline = (
                self.config.uplink.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
            )
            delivered = self._drain.flush(deadline)
            self._stop_telemetry()  # its last minute goes out while the link is still up
            self._stop_uplink.set()
            if self._drain_thread is not None:
                self._drain_thread.join()
            if not delivered:
                log.warning(
                    "stopping with %d event(s) not yet delivered; they stay in the outbox",
                    self.outbox.stats().depth,
                )
            self._transport.disconnect()  # publishes the retained "stopped" status first
        self._stop_telemetry()
        self._resources.close()
        log.info("edge-app stopped")

    def _stop_telemetry(self) -> None:
        if self.telemetry is not None:
            self.telemetry.stop()
            self.telemetry = None

    def __enter__(self) -> EdgeApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
