"""The MQTT side of the app: the drain with its side lanes, the transport, the shadow client and
the IoT Jobs agent, and the decider of changes made on the device."""

from __future__ import annotations

__all__ = [
    "CONFIG_JOB_WAIT_S",
    "Wire",
    "config_changes",
    "drain_loop",
    "mqtt_transport",
    "serialised",
    "side_lanes",
    "update_reporter",
    "uplink_parts",
]

import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from edge_app.atrest import Sealer
from edge_app.builder.parts import ConfigChange, Step, UplinkParts
from edge_app.clock import Clock
from edge_app.config import AppConfig
from edge_app.models.offer import ModelUpdates
from edge_app.outbox import LaneStore, Outbox
from edge_app.reconfigure import RuntimeApplier
from edge_app.remote import Outcome, ShadowClient, ShadowHandler
from edge_app.remote.jobs import JobsAgent
from edge_app.telemetry.wiring import metrics_lane_sender
from edge_app.updates import UpdateRecord
from edge_app.uplink import (
    DrainLoop,
    LaneSender,
    MqttTransport,
    RateLimiter,
    SnapshotSender,
    Transport,
    codec,
    status_payload,
)


@dataclass(slots=True)
class Wire:
    """The uplink parts while they are being built (all None without an uplink), and the two
    questions other parts ask of them."""

    transport: Transport | None = None
    drain: DrainLoop | None = None
    drain_stop: threading.Event = field(default_factory=threading.Event)
    snapshot_lane: LaneStore | None = None
    snapshots: SnapshotSender | None = None

    def logs_may_send(self) -> bool:
        """CloudWatch Logs shipping (HTTPS, the lowest lane) waits while the MQTT drain has
        anything to send and a connection to send it on; it does not compete for the link."""
        drain, transport = self.drain, self.transport
        if drain is None or transport is None or not transport.is_connected:
            return True
        return not drain.backlog()

    def undelivered(self, outbox: Outbox, ids: Sequence[str]) -> set[str]:
        """Retention's question: which of these events' snapshots must stay (the event is
        still in the outbox, or its snapshot still queued for upload)."""
        held = outbox.holding(ids)
        if self.snapshots is not None:
            held |= self.snapshots.queued_ids().intersection(ids)
        return held


def drain_loop(
    config: AppConfig,
    effective: AppConfig,
    outbox: Outbox,
    transport: Transport,
    *,
    lanes: list[LaneSender],
    stop: threading.Event,
    clock: Clock,
) -> DrainLoop:
    up, batch = config.uplink, effective.uplink.batch
    return DrainLoop(
        outbox,
        transport,
        topic=f"{config.topic_prefix}/events",
        clock=clock,
        max_events=batch.max_events,
        max_bytes=batch.max_bytes,
        max_wait_s=batch.max_wait_s,
        stop=stop,
        window=up.inflight,
        limiter=RateLimiter(
            clock=clock, publishes_per_s=up.max_publishes_per_s, bytes_per_s=up.max_bytes_per_s
        ),
        lanes=lanes,
        compression=codec(up.compression),
    )


def side_lanes(
    config: AppConfig, outbox: Outbox, sealer: Sealer | None, stack: ExitStack, wire: Wire
) -> list[LaneSender]:
    """The drain's lanes below events, highest priority first: snapshots (also kept in
    ``wire``), then metrics (``metrics.sink: mqtt``). Logs go over HTTPS instead and yield by
    ``logs_may_send``."""
    lanes: list[LaneSender] = []
    rows = config.uplink.snapshot_lane_rows
    if rows > 0:
        lane = stack.enter_context(LaneStore(config.outbox_path, "snapshots", max_rows=rows))
        # Pictures count against outbox.max_bytes and give way before any event does.
        outbox.share_budget(lane)
        wire.snapshot_lane = lane
        wire.snapshots = SnapshotSender(
            lane, config.snapshot_dir, topic_prefix=config.topic_prefix, sealer=sealer
        )
        lanes.append(wire.snapshots)
    metrics = metrics_lane_sender(config)
    if metrics is not None:
        stack.callback(metrics.store.close)
        lanes.append(metrics)
    return lanes


def mqtt_transport(config: AppConfig) -> MqttTransport:
    up = config.uplink
    return MqttTransport(
        up.host,
        up.port,
        client_id=up.client_id or config.device.thing_name,
        tls=up.tls,
        insecure_plaintext=up.insecure_plaintext,
        keepalive_s=up.keepalive_s,
        will=(f"{config.topic_prefix}/status", status_payload("offline")),
        reconnect_min_s=up.reconnect.min_s,
        reconnect_max_s=up.reconnect.max_s,
        inflight=up.inflight,
    )


def config_changes(
    config: AppConfig,
    wire: Wire,
    *,
    page: bool,
    applier: Callable[[], RuntimeApplier],
    handler: Callable[[RuntimeApplier], ShadowHandler],
    step: Step,
    on_config_outcome: Callable[[Outcome], None],
) -> tuple[tuple[ShadowClient, threading.Event] | None, ConfigChange | None]:
    """Remote config (with an uplink) and the decider of changes made on the device (with
    the status page): one ``ShadowHandler`` serves both, so a local change takes the remote
    one's path, and so does a config job (``_uplink`` hands the Jobs agent's overlays to the
    same thread). Returns the shadow client with its stop event, and the local decider (None:
    neither is needed)."""
    transport, drain = wire.transport, wire.drain
    if transport is not None and drain is not None:
        step("remote config")
        decider = handler(applier())
        shadow_stop = threading.Event()
        shadow = ShadowClient(
            transport,
            decider,
            config.device.thing_name,
            stop=shadow_stop,
            on_outcome=on_config_outcome,
        )
        # the remote-config thread decides local changes too, in turn with shadow messages
        return (shadow, shadow_stop), shadow.local_change
    if page:
        return None, serialised(handler(applier()))
    return None, None


def uplink_parts(
    config: AppConfig,
    wire: Wire,
    shadow: tuple[ShadowClient, threading.Event] | None,
    *,
    clock: Clock,
    models: ModelUpdates,
) -> UplinkParts | None:
    """The MQTT side as one part: transport, drain, shadow client and the IoT Jobs agent,
    whose config jobs go through the shadow thread and model jobs to ``models`` (built after
    the shadow client, since the updater persists a switch through its local-change path)."""
    transport, drain = wire.transport, wire.drain
    if transport is None or drain is None or shadow is None:
        return None
    client, shadow_stop = shadow

    def config_job(desired: dict[str, Any], origin: str) -> Outcome:
        return client.local_change(desired, CONFIG_JOB_WAIT_S, origin=origin)

    jobs_stop = threading.Event()
    jobs = JobsAgent(
        transport,
        config.device.thing_name,
        stop=jobs_stop,
        clock=clock,
        config=config_job,
        models=models,
    )
    return UplinkParts(transport, drain, wire.drain_stop, client, shadow_stop, jobs, jobs_stop)


CONFIG_JOB_WAIT_S = 300.0
"""How long a config job waits for the remote-config thread (a new model may load first)."""


def serialised(handler: ShadowHandler) -> ConfigChange:
    """``handler.handle_local`` for an app without remote config: no client thread exists,
    so a lock keeps its decisions one at a time (the handler is single-threaded)."""
    lock = threading.Lock()

    def change(state: dict[str, Any], timeout_s: float) -> Outcome:
        if not lock.acquire(timeout=timeout_s):
            raise TimeoutError("another config change is being applied")
        try:
            return handler.handle_local(state)
        finally:
            lock.release()

    return change


def update_reporter(
    shadow: tuple[ShadowClient, threading.Event] | None,
) -> Callable[[UpdateRecord], None] | None:
    """Each model update's outcome into the shadow's ``reported.model_update``."""
    if shadow is None:
        return None
    client = shadow[0]
    return lambda record: client.report({"model_update": record.to_json()})
