"""Composition root: builds every part from the config, starts and stops the threads.

Nothing else in edge_app starts long-running threads (sources own their reader thread, which
lives and dies with ``frames()``). Shutdown order matters for the no-loss promise: stop taking
frames, let the camera loops finish the frame in hand and close their episodes (those events are
committed), then keep delivering for ``uplink.flush_timeout_s``, then close the store.

Configuration in force is ``local file + last-good overlay`` at boot, then whatever the named
shadow ``edge-config`` changes (``edge_app.remote``). The running config is a ``Runtime``
snapshot in a ``RuntimeHolder``; ``reconfigure.RuntimeApplier`` builds a new one (loading and
test-running a new model first) and swaps it in; each camera loop adopts it at the top of its
next frame.
"""

from __future__ import annotations

__all__ = ["AppStats", "EdgeApp"]

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Self

from edge_app.actions import ClipRecorder, ClipWriter, Retention, SnapshotWriter, ram_scratch
from edge_app.atrest import Sealer, load_sealer
from edge_app.clock import Clock, SystemClock
from edge_app.config import (
    AppConfig,
    CameraConfig,
    ConfigSnapshot,
    LastGood,
    LastGoodStore,
    effective_config,
)
from edge_app.domain import Event
from edge_app.errors import ConfigError, FieldError, OutboxError
from edge_app.files import loose_bits, private_dir
from edge_app.models import Catalog, load_manifest
from edge_app.outbox import LaneStore, Outbox, recovery_event
from edge_app.pipeline import CameraStats, CameraWorker, Runtime, RuntimeHolder
from edge_app.reconfigure import RuntimeApplier
from edge_app.remote import Outcome, ShadowClient, ShadowHandler
from edge_app.sources import open_source
from edge_app.telemetry import DiskUsage, HealthEvents, TimeoutExtender, load_token, sd_notify
from edge_app.telemetry.wiring import Telemetry, metrics_lane_sender
from edge_app.uplink import (
    DrainLoop,
    LaneSender,
    MqttTransport,
    RateLimiter,
    SnapshotSender,
    Transport,
    codec,
    snapshot_row,
    status_payload,
)
from edge_app.vision.detector import Detector, open_detector
from edge_app.vision.fairlock import FairLock
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
        catalog: Catalog | None = None,
        disk_usage: DiskUsage | None = None,
        notify: Callable[[str], bool] = sd_notify,
        watchdog_s: float | None = None,
    ) -> None:
        """``disk_usage``, ``notify`` (sd_notify) and ``watchdog_s`` (default: from
        ``$WATCHDOG_USEC``) are seams for tests of health, the systemd watchdog and the start
        timeout extended while a damaged outbox is salvaged."""
        self.config = config  # the local file; ``snapshot`` is what runs
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
        self._snapshot_lane: LaneStore | None = None
        self._snapshot_sender: SnapshotSender | None = None
        self.retention: Retention | None = None
        """Local retention of snapshots and clips (its thread runs from ``start``)."""
        self._stop_retention = threading.Event()
        self._drain_thread: threading.Thread | None = None
        self._retention_thread: threading.Thread | None = None
        self._health_events: HealthEvents | None = None
        self._started = False
        self._sealer: Sealer | None = None
        self._clip_writer: ClipWriter | None = None
        self._catalog = catalog
        self._live: RuntimeHolder | None = None
        self._shadow: ShadowClient | None = None
        self._shadow_thread: threading.Thread | None = None
        self._stop_shadow = threading.Event()
        # FIFO: cameras sharing the detector take turns instead of racing for it
        self._detector_lock = FairLock()

    @property
    def snapshot(self) -> ConfigSnapshot:
        """The configuration in force now, with its source and remote version."""
        if self._live is None:
            return ConfigSnapshot.of(self.config, "file", None)
        return self._live.current.snapshot

    @property
    def status_topic(self) -> str:
        return f"{self.config.topic_prefix}/status"

    def start(self) -> None:
        """Open everything and start the threads. Raises on a bad model, source or store,
        and (``ConfigError``) on a missing or unsafe health endpoint token."""
        cfg = self.config
        # Before anything is opened: no token where one is configured refuses the start.
        health_token = load_token(cfg.health) if cfg.health.enabled else None
        try:
            _make_data_dir(cfg)
            self._sealer = self._open_sealer()
            self.outbox = self._resources.enter_context(
                Outbox(
                    cfg.outbox_path,
                    clock=self._clock,
                    device=cfg.device.thing_name,
                    max_bytes=cfg.outbox.max_bytes,
                    max_age_s=cfg.outbox.max_age_days * 86400,
                    sealer=self._sealer,
                    # A salvage of a large damaged outbox can outlast TimeoutStartSec=.
                    progress=TimeoutExtender(self._clock, notify=self._notify),
                )
            )
            catalog = self._catalog or load_manifest()
            self._models = catalog.names
            store = LastGoodStore(cfg.device.data_dir)
            effective, last = effective_config(cfg, store, catalog.names)
            snapshot = ConfigSnapshot.of(
                effective, "last-good" if last else "file", last.version if last else None
            )
            detector = self._detector or open_detector(effective.detector, catalog)
            if self._detector is None:
                self._resources.callback(detector.close)
            self.detector = detector
            self._live = RuntimeHolder(Runtime(snapshot, detector))
            if self.outbox.recovery is not None:
                # The cloud must learn what was salvaged and which seqs were lost with the file.
                self.outbox.report_recovery(
                    recovery_event(
                        cfg.device.thing_name, detector.model, self.outbox.recovery, self._clock
                    )
                )
            ctx = EventContext(cfg.device.thing_name, detector.model, effective.version)
            snapshots = SnapshotWriter(cfg.snapshot_dir, sealer=self._sealer)
            for camera in effective.cameras:
                source = open_source(camera, self._clock)
                self._resources.callback(source.close)
                worker = CameraWorker(
                    source,
                    detector,
                    RuleEngine(camera, effective.rules, ctx),
                    self._store,
                    stop=self._stop_capture,
                    fps=camera.fps,
                    snapshots=snapshots,
                    detector_lock=self._detector_lock,
                    live=self._live,
                    motion=camera.motion,
                    tamper=camera.tamper,
                    clips=self._clip_recorder(camera),
                    clock=self._clock,
                    max_lag_s=camera.max_lag_s,
                )
                self._workers.append(worker)
            if cfg.uplink.enabled:
                self._start_uplink(store, last)
            retention = self.retention = Retention.for_config(
                effective, pending=self._undelivered, stop=self._stop_retention
            )
            live = self._live
            self._health_events = (
                # into the cameras' sink: stored and delivered like their events
                HealthEvents(
                    self._store,
                    device=cfg.device.thing_name,
                    model=lambda: live.current.detector.model,
                    clock=self._clock,
                )
                if cfg.health.events
                else None
            )
            self.telemetry = Telemetry(
                cfg,
                clock=self._clock,
                cameras=lambda: {w.camera: w.stats for w in self._workers},
                outbox=self.outbox.stats,
                drain=lambda: self._drain.stats() if self._drain is not None else None,
                transport=self._transport if cfg.uplink.enabled else None,
                snapshots=(self._snapshot_lane.stats if self._snapshot_lane is not None else None),
                disk_usage=self._disk_usage,
                notify=self._notify,
                watchdog_s=self._watchdog_s,
                logs_may_send=self._logs_may_send,
                health_token=health_token,
                on_health=self._health_events.observe if self._health_events else None,
            )
            self._resources.callback(self.telemetry.lane.close)
        except BaseException:
            self._resources.close()
            raise
        for worker in self._workers:
            thread = threading.Thread(target=worker.run, name=f"camera-{worker.camera}")
            thread.start()
            self._threads.append(thread)
        if self._shadow is not None:
            self._shadow_thread = threading.Thread(target=self._shadow.run, name="remote-config")
            self._shadow_thread.start()
        self._retention_thread = threading.Thread(target=retention.run, name="retention")
        self._retention_thread.start()
        self.telemetry.start(status=self._status)
        self._started = True
        log.info(
            "edge-app started: device %s, %d camera(s), model %s via %s",
            cfg.device.thing_name,
            len(self._workers),
            detector.model.name,
            getattr(detector, "runtime_name", "?"),
        )

    def _clip_recorder(self, camera: CameraConfig) -> ClipRecorder | None:
        """``camera``'s clip recorder (None without ``clips``); the first one starts the
        clip writer all cameras share (closed with the app's resources)."""
        if camera.clips is None:
            return None
        if self._clip_writer is None:
            # encrypted clips are encoded in RAM first: no clear byte on the disk
            self._clip_writer = ClipWriter(sealer=self._sealer, scratch=ram_scratch())
            self._resources.callback(self._clip_writer.close)
        c = camera.clips
        return ClipRecorder(
            self.config.clip_dir(camera.name),
            self._clip_writer,
            pre_s=c.pre_s,
            post_s=c.post_s,
            fps=c.fps,
            width=c.width,
        )

    def _open_sealer(self) -> Sealer | None:
        """The at-rest key of ``encryption`` (None without one); ``EncryptionError`` if the key
        cannot be read, is open to others, or the cryptography package is missing."""
        crypt = self.config.encryption
        sealer = load_sealer(crypt.key_file, crypt.credential, seal_new=crypt.enabled)
        if sealer is not None:
            log.info(
                "encryption at rest %s (key id %s, %s)",
                "on" if crypt.enabled else "off for new items, reading encrypted ones",
                sealer.key_id,
                sealer.source,
            )
        return sealer

    def _start_uplink(self, store: LastGoodStore, last: LastGood | None) -> None:
        up = self.config.uplink
        batch = self.snapshot.config.uplink.batch
        if self._transport is None:
            self._transport = MqttTransport(
                up.host,
                up.port,
                client_id=up.client_id or self.config.device.thing_name,
                tls=up.tls,
                insecure_plaintext=up.insecure_plaintext,
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
            max_events=batch.max_events,
            max_bytes=batch.max_bytes,
            max_wait_s=batch.max_wait_s,
            stop=self._stop_uplink,
            window=up.inflight,
            limiter=RateLimiter(
                clock=self._clock,
                publishes_per_s=up.max_publishes_per_s,
                bytes_per_s=up.max_bytes_per_s,
            ),
            lanes=self._open_side_lanes(),
            compression=codec(up.compression),
        )
        live = self._live
        assert live is not None  # start() built it before the uplink
        applier = RuntimeApplier(
            live,
            catalog=self._catalog,
            detector_lock=self._detector_lock,
            retire=lambda detector: self._resources.callback(detector.close),
            set_batching=self._drain.set_batching,
        )
        handler = ShadowHandler(
            self.config,
            applier,
            store,
            models=self._models,
            clock=self._clock,
            audit=self._store,
            last=last,
        )
        self._shadow = ShadowClient(
            self._transport,
            handler,
            self.config.device.thing_name,
            stop=self._stop_shadow,
            on_outcome=self.on_config_outcome,
        )
        self._shadow.attach()  # before connect: the first CONNACK already asks for the shadow
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

    def _open_side_lanes(self) -> list[LaneSender]:
        """The drain's lanes below events, highest priority first: snapshots, then metrics
        (``metrics.sink: mqtt``). Logs go over HTTPS and yield by ``_logs_may_send``."""
        lanes: list[LaneSender] = []
        rows = self.config.uplink.snapshot_lane_rows
        if rows > 0:
            lane = LaneStore(self.config.outbox_path, "snapshots", max_rows=rows)
            self._resources.callback(lane.close)
            self._snapshot_lane = lane
            # Pictures count against outbox.max_bytes and give way before any event does.
            self.outbox.share_budget(lane)
            self._snapshot_sender = SnapshotSender(
                lane,
                self.config.snapshot_dir,
                topic_prefix=self.config.topic_prefix,
                sealer=self._sealer,
            )
            lanes.append(self._snapshot_sender)
        metrics = metrics_lane_sender(self.config)
        if metrics is not None:
            self._resources.callback(metrics.store.close)
            lanes.append(metrics)
        return lanes

    def _logs_may_send(self) -> bool:
        """CloudWatch Logs shipping (HTTPS, the lowest lane) waits while the MQTT drain has
        anything to send and a connection to send it on; it does not compete for the link."""
        drain, transport = self._drain, self._transport
        if drain is None or transport is None or not transport.is_connected:
            return True
        return not drain.backlog()

    def _undelivered(self, ids: Sequence[str]) -> set[str]:
        """Retention's question: which of these events' snapshots must stay (the event is
        still in the outbox, or its snapshot still queued for upload)."""
        held = self.outbox.holding(ids)
        if self._snapshot_sender is not None:
            held |= self._snapshot_sender.queued_ids().intersection(ids)
        return held

    def _store(self, event: Event) -> Event:
        stored = self.outbox.enqueue(event)
        if self._snapshot_lane is not None and stored.snapshot is not None:
            try:
                snap = stored.snapshot
                size = snap.get("bytes")
                row = snapshot_row(
                    stored.id, str(snap["file"]), size if isinstance(size, int) else None
                )
                self._snapshot_lane.add([(stored.wall, row)])
                self.outbox.fit_budget()  # over budget: the oldest snapshots go, never events
            except OutboxError as exc:
                # The event itself is stored; only its picture will not be sent.
                log.warning("snapshot of event %s not queued for upload: %s", stored.id, exc)
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

    def camera_stats(self) -> dict[str, CameraStats]:
        """Each camera loop's live counters, without touching the outbox (cheap to poll)."""
        return {w.camera: w.stats for w in self._workers}

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
        self._stop_shadow.set()
        if self._shadow_thread is not None:
            self._shadow_thread.join()
        if self._health_events is not None:
            self._health_events.close()  # ends open conditions, before the last delivery
        self._stop_retention.set()  # before the outbox it asks is closed
        if self._retention_thread is not None:
            self._retention_thread.join()
        if self._drain is not None and self._transport is not None:
            deadline = (
                self.config.uplink.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
            )
            delivered = self._drain.flush(deadline)
            # Telemetry stores its last minute now; the cloudwatch/file sinks ship it at once,
            # the MQTT metrics lane (like snapshots) is not flushed: its rows stay stored and
            # go out after the next start, so shutdown waits for events only.
            self._stop_telemetry()
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

    def on_config_outcome(self, outcome: Outcome) -> None:
        """Called on the remote-config thread after each shadow decision (a hook for tests)."""

    def _stop_telemetry(self) -> None:
        if self.telemetry is not None:
            self.telemetry.stop()
            self.telemetry = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_data_dir(cfg: AppConfig) -> None:
    """Create ``device.data_dir`` 0700 (it holds images of people); warn about an existing one
    that group or others may enter, which is left as it is (it may be shared on purpose)."""
    path = cfg.device.data_dir
    try:
        mode = private_dir(path).stat().st_mode
    except OSError as exc:
        raise ConfigError(
            "device.data_dir", [FieldError("device.data_dir", f"cannot create {path}: {exc}")]
        ) from exc
    if loose_bits(mode):
        log.warning(
            "data_dir %s is open to group or others (mode %o) and holds images of people: "
            "chmod 700 it (the systemd unit's StateDirectoryMode=0700 does)",
            path,
            mode & 0o777,
        )
