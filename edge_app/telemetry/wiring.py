"""Builds the telemetry parts from the config, for the composition root.

Kept here so ``app.py`` stays about start/stop order: ``Telemetry`` owns the registry, the
metrics lane, the sink, the health monitor, the HTTP server and the systemd watchdog, and the
root starts and stops its threads.
"""

from __future__ import annotations

__all__ = ["Telemetry", "aws_for", "build_sink", "metrics_lane_sender"]

import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from edge_app.clock import Clock
from edge_app.config import AppConfig
from edge_app.errors import TelemetryError
from edge_app.outbox import LaneStats, LaneStore, OutboxStats
from edge_app.telemetry.aggregate import MinuteAggregator
from edge_app.telemetry.aws import IotCredentialsSource, aws_client
from edge_app.telemetry.collector import CameraCounters, Collector, DiskUsage
from edge_app.telemetry.health import (
    HealthMonitor,
    HealthReport,
    HealthThresholds,
    ProgressCounters,
)
from edge_app.telemetry.http import HealthServer
from edge_app.telemetry.logship import CloudWatchLogsSink, LogBuffer, LogShipper
from edge_app.telemetry.metricslane import MetricsLaneSender
from edge_app.telemetry.registry import Registry
from edge_app.telemetry.shipper import TelemetryLoop
from edge_app.telemetry.sinks import CloudWatchSink, EmfFileSink, MetricsSink
from edge_app.telemetry.systemd import Watchdog, sd_notify, watchdog_interval_s
from edge_app.telemetry.token import BearerToken
from edge_app.uplink import DrainStats, Transport

_log = logging.getLogger(__name__)


class _Camera(CameraCounters, ProgressCounters, Protocol):
    """What telemetry reads of ``CameraStats``."""


def aws_for(config: AppConfig, service: str, endpoint_url: str | None) -> Any:
    """A boto3 client for ``service`` with the configured region and credentials."""
    aws = config.aws
    iot = None
    if aws.credentials == "iot":
        tls = config.uplink.tls
        if tls is None or aws.iot_endpoint is None or aws.role_alias is None:
            raise TelemetryError("aws.credentials 'iot' needs uplink.tls, iot_endpoint, role_alias")
        iot = IotCredentialsSource(
            aws.iot_endpoint, aws.role_alias, config.device.thing_name, tls.cert, tls.key, tls.ca
        )
    return aws_client(service, region=aws.region, endpoint_url=endpoint_url, iot=iot)


def build_sink(config: AppConfig) -> MetricsSink | None:
    """The configured sink; ``None`` keeps aggregates queued for someone else: sink ``mqtt``
    (the drain's metrics lane sends them, see ``metrics_lane_sender``) or ``none``."""
    m = config.metrics
    if m.sink == "file":
        return EmfFileSink(m.file or config.device.data_dir / "metrics.emf.jsonl", m.namespace)
    if m.sink == "cloudwatch":
        return CloudWatchSink(aws_for(config, "cloudwatch", m.endpoint_url), m.namespace)
    return None


def metrics_lane_sender(config: AppConfig) -> MetricsLaneSender | None:
    """The drain loop's metrics lane for ``metrics.sink: mqtt`` (None otherwise), reading the
    metrics lane through its own connection. The caller closes ``sender.store``."""
    m = config.metrics
    if not (m.enabled and m.sink == "mqtt" and config.uplink.enabled):
        return None
    store = LaneStore(config.outbox_path, "metrics", max_rows=m.max_rows)
    return MetricsLaneSender(store, topic=f"{config.topic_prefix}/metrics", namespace=m.namespace)


class Telemetry:
    """Every telemetry part of one app. ``start()`` starts its threads, ``stop()`` ends them."""

    def __init__(
        self,
        config: AppConfig,
        *,
        clock: Clock,
        cameras: Callable[[], Mapping[str, _Camera]],
        outbox: Callable[[], OutboxStats | None],
        drain: Callable[[], DrainStats | None],
        transport: Transport | None,
        snapshots: Callable[[], LaneStats | None] | None = None,
        disk_usage: DiskUsage | None = None,
        notify: Callable[[str], bool] = sd_notify,
        watchdog_s: float | None = None,
        environ: Mapping[str, str] | None = None,
        logs_may_send: Callable[[], bool] = lambda: True,
        health_token: BearerToken | None = None,
    ) -> None:
        """``logs_may_send`` says whether CloudWatch Logs may be shipped now; the app passes
        "the MQTT drain has nothing waiting", so logs yield the link to events, snapshots
        and metrics. ``health_token`` (from ``load_token``) guards the HTTP endpoint."""
        self.config = config
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        disk = disk_usage or shutil.disk_usage
        data_dir: Path = config.device.data_dir

        def connected() -> bool:
            return bool(transport and transport.is_connected)

        m, cwl = config.metrics, config.cloudwatch_logs
        # The remote clients first: a bad sink setting fails here, before a lane is opened.
        sink = build_sink(config) if m.enabled else None
        logs_client = aws_for(config, "logs", cwl.endpoint_url) if cwl.enabled else None
        self.registry = Registry({"device": config.device.thing_name})
        reconnects = self.registry.counter("UplinkReconnects", "Count", "Connections made")
        if transport is not None:
            transport.on_connection_change(lambda up: reconnects.inc() if up else None)
        self.lane = LaneStore(
            config.outbox_path, "metrics", max_rows=config.metrics.max_rows, clock=clock
        )
        self.collector = Collector(
            self.registry,
            clock=clock,
            cameras=cameras,
            outbox=outbox,
            drain=drain,
            connected=connected,
            disk_path=data_dir,
            disk_usage=disk,
            lane=self.lane,
            snapshots=snapshots,
        )
        h = config.health
        self.health = HealthMonitor(
            clock=clock,
            cameras=cameras,
            outbox=outbox,
            outbox_max_bytes=config.outbox.max_bytes,
            connected=connected if config.uplink.enabled else None,
            disk_path=data_dir,
            disk_usage=disk,
            thresholds=HealthThresholds(
                h.camera_stale_s,
                h.detector_stuck_s,
                h.disk_low_fraction,
                h.uplink_down_s,
                h.outbox_full_fraction,
                h.clock_unsynced_s,
            ),
        )
        self._on_health: Callable[[HealthReport], None] | None = None
        self.loop = TelemetryLoop(
            aggregator=MinuteAggregator(self.registry, period_s=m.period_s),
            lane=self.lane,
            sink=sink,
            clock=clock,
            stop=self._stop,
            collect=self._tick,
            sample_s=m.sample_s,
        )
        self.watchdog = Watchdog(
            first_frame=lambda: any(c.processed for c in cameras().values()),
            flowing=lambda: self.health.check().frames_flowing,
            stop=self._stop,
            interval_s=watchdog_s if watchdog_s is not None else watchdog_interval_s(environ),
            notify=notify,
        )
        self.logs: LogShipper | None = None
        self._log_buffer: LogBuffer | None = None
        self._log_lane: LaneStore | None = None
        if logs_client is not None:
            self._log_buffer = LogBuffer()
            try:
                self._log_lane = LaneStore(
                    config.outbox_path, "logs", max_rows=100_000, clock=clock
                )
            except BaseException:
                self.lane.close()  # nothing else is open yet
                raise
            stream = cwl.stream or config.device.thing_name
            self.logs = LogShipper(
                self._log_buffer,
                self._log_lane,
                CloudWatchLogsSink(logs_client, cwl.group, stream),
                clock=clock,
                may_send=logs_may_send,
            )
        self._notify = notify
        self._health_token = health_token
        self.server: HealthServer | None = None
        self._status: Callable[[], dict[str, Any]] = dict

    def _tick(self) -> None:
        self.collector.collect()
        report = self.health.check()  # keeps progress tracking current between probes
        if self._on_health is not None:
            self._on_health(report)
        if self.logs is not None:
            self.logs.tick()

    def start(
        self,
        status: Callable[[], dict[str, Any]],
        on_health: Callable[[HealthReport], None] | None = None,
    ) -> None:
        """Start the telemetry loop, the watchdog and (if enabled) the HTTP endpoint.
        ``status`` gives the body of ``/status``; ``on_health`` (``HealthEvents.observe``) gets
        every health report of the telemetry thread, from now until ``stop``."""
        self._on_health = on_health
        if self._log_buffer is not None:
            logging.getLogger().addHandler(self._log_buffer)
        h = self.config.health
        if h.enabled:
            try:
                self.server = HealthServer(
                    h.host,
                    h.port,
                    registry=self.registry,
                    health=self.health,
                    status=status,
                    token=self._health_token,
                    timeout_s=h.request_timeout_s,
                    max_connections=h.max_connections,
                )
                self.server.start()
            except TelemetryError as exc:
                # health is an aid, not the job: the cameras and the outbox run without it
                _log.error("%s; running without the health endpoint", exc)
        bodies: list[tuple[str, Callable[[], None]]] = [("watchdog", self.watchdog.run)]
        if (
            self.config.metrics.enabled
            or h.enabled
            or self.logs is not None
            or self._on_health is not None
        ):
            bodies.append(("telemetry", self.loop.run))
        for name, body in bodies:
            thread = threading.Thread(target=body, name=name)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Close the metrics and log lanes without stopping anything (``stop`` does this
        too): for an app whose start failed before ``start``. Idempotent."""
        if self._log_lane is not None:
            self._log_lane.close()
        self.lane.close()

    def stop(self) -> None:
        """Stop the threads (the partial minute is stored), the server, close the lanes.
        Also safe after a ``start`` that failed half-way (it stops what did start)."""
        self._notify("STOPPING=1")
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self.server is not None:
            self.server.close()
        if self._log_buffer is not None:
            logging.getLogger().removeHandler(self._log_buffer)
        if self.logs is not None and self._log_lane is not None:
            try:
                self.logs.tick()  # the last lines go to disk (and out, if online)
            finally:
                self._log_lane.close()
        self.lane.close()
