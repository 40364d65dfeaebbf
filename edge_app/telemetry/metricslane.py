"""The metrics lane of the uplink: stored minute aggregates as EMF documents over MQTT.

With ``metrics.sink: mqtt`` the telemetry loop only stores aggregates in the outbox file's
``metrics`` lane; ``MetricsLaneSender`` is handed by the composition root to the drain loop
as a side lane below snapshots (``edge_app.uplink.lanes``), so metrics share the connection's
rate caps and in-flight window and never delay an event or a snapshot. It reads the oldest
rows, packs them with ``pack_emf`` into documents within the payload limit (one document per
publish: the IoT rule hands each message to CloudWatch Logs as one log event, and EMF wants
one JSON object per event), publishes them QoS 1 on ``{prefix}/metrics`` and deletes the rows
on PUBACK; a failed publish keeps them and is offered again.

It lives in ``telemetry`` (which knows ``MetricDatum`` and EMF) and implements the uplink's
``LaneSender`` protocol; the uplink never imports telemetry.
"""

from __future__ import annotations

__all__ = ["MetricsLaneSender"]

import logging

from edge_app.outbox import LaneStore
from edge_app.telemetry.aggregate import MetricDatum
from edge_app.telemetry.sinks import pack_emf
from edge_app.uplink import DEFAULT_MAX_PAYLOAD_BYTES, LanePublish, StoredLaneSender

_log = logging.getLogger(__name__)


class MetricsLaneSender(StoredLaneSender):
    """``LaneSender`` for the ``metrics`` lane ``lane`` (caller-owned): EMF documents in
    ``namespace`` on ``topic``, each payload at most ``max_bytes`` bytes. It prepares the
    documents of up to ``chunk`` rows at a time. Used by the drain thread (``waiting`` is
    thread-safe)."""

    lane = "metrics"

    def __init__(
        self,
        lane: LaneStore,
        *,
        topic: str,
        namespace: str,
        max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        chunk: int = 200,
    ) -> None:
        if max_bytes < 1024 or chunk < 1:
            raise ValueError(
                f"MetricsLaneSender needs max_bytes >= 1024 and chunk >= 1, got {max_bytes} "
                f"and {chunk}"
            )
        super().__init__(lane)
        self._topic = topic
        self._namespace = namespace
        self._max_bytes = max_bytes
        self._chunk = chunk
        self.sent = 0  # aggregates acknowledged
        self.skipped = 0  # rows that could never be sent (unreadable, or too large alone)

    def next_publish(self) -> LanePublish | None:
        """The next EMF document of the oldest rows not yet handed out, or None."""
        if not self._ready:
            self._prepare()
        return self._ready.popleft() if self._ready else None

    def delivered(self, publish: LanePublish) -> None:
        """The broker acknowledged ``publish``: its aggregates leave the lane."""
        super().delivered(publish)
        self.sent += len(publish.rows)

    def _prepare(self) -> None:
        rows = self._unclaimed(self._chunk)
        datums: list[MetricDatum] = []
        ids: list[int] = []
        bad: list[int] = []
        for row in rows:
            try:
                datums.append(MetricDatum.from_json(row.body, ts=row.ts))  # corrected time
                ids.append(row.id)
            except (ValueError, KeyError, TypeError) as exc:
                _log.warning("metrics row %d is unreadable and skipped: %s", row.id, exc)
                bad.append(row.id)
        for payload, indices in pack_emf(datums, self._namespace, max_bytes=self._max_bytes):
            carried = tuple(ids[i] for i in indices)
            if len(payload) > self._max_bytes:
                name = datums[indices[0]].name
                _log.warning("metric %s alone exceeds %d bytes; skipped", name, self._max_bytes)
                bad.extend(carried)
                continue
            self._ready.append(self._claim(LanePublish(self._topic, payload, carried)))
        if bad:
            # Never sendable: waiting would block the lane for good.
            self.skipped += len(bad)
            self._lane.delete(bad)
