"""Where raised events enter delivery: the sink of the camera loops and of the config audit.

Following an event from the rules to the cloud: the camera loop (``pipeline``) raises it and
hands it to ``EventIntake.accept``, which

1. stores it durably (``Outbox.enqueue``; ``seq`` is assigned in the commit, and from then on
   the event exists, whatever happens to the process);
2. queues its snapshot for upload on the snapshot lane, whose JPEG bytes count against the
   outbox byte budget: over budget, the oldest snapshots give way, never an event;
3. counts it in the ``Events`` metric (by rule and severity);
4. wakes the drain loop (``uplink.DrainLoop``), which batches it to MQTT and deletes it from
   the outbox on the PUBACK.

Only step 1 can fail the call (``OutboxError``): an event that is stored but whose picture
cannot be queued is still raised, without its upload.
"""

from __future__ import annotations

__all__ = ["EventIntake"]

import logging
from collections.abc import Callable

from edge_app.domain import Event
from edge_app.errors import OutboxError
from edge_app.outbox import LaneStore, Outbox
from edge_app.telemetry import Registry
from edge_app.uplink import snapshot_row

log = logging.getLogger(__name__)


class EventIntake:
    """Stores, queues, counts and announces each event. Thread-safe (every camera loop and
    the remote-config thread call ``accept``).

    ``outbox`` and the ``snapshots`` lane (None: snapshots are not uploaded) are owned by the
    composition root and stay open while the intake is used; ``registry`` receives the
    ``Events`` counter; ``wake`` (the drain loop's ``notify``; None without an uplink) is called
    after each stored event.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        registry: Registry,
        snapshots: LaneStore | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self._registry = registry
        self._snapshots = snapshots
        self._wake = wake

    def accept(self, event: Event) -> Event:
        """Store ``event`` and return it with its ``seq``; ``OutboxError`` if it could not be
        stored (nothing else happened then)."""
        stored = self._outbox.enqueue(event)
        snap = stored.snapshot
        if self._snapshots is not None and snap is not None:
            try:
                self._snapshots.add([(stored.wall, snapshot_row(stored.id, snap.file, snap.bytes))])
                self._outbox.fit_budget()  # over budget: the oldest snapshots go, never events
            except OutboxError as exc:
                # The event itself is stored; only its picture will not be sent.
                log.warning("snapshot of event %s not queued for upload: %s", stored.id, exc)
        # one call per event (rare next to frames); the registry keeps one counter per labels
        self._registry.counter(
            "Events", "Count", "Events raised", rule=stored.rule, severity=stored.severity.value
        ).inc()
        if self._wake is not None:
            self._wake()
        return stored
