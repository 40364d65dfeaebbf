"""The message loop the shadow client and the Jobs agent share: MQTT messages queued off the
network thread and handled one at a time on a thread of their own.

Handling a message on paho's network thread would stall every other subscription and the
drain's acknowledgements (a model test-load takes seconds), so the network thread only queues;
``run()``, on a thread the composition root starts, takes them in arrival order. A (re)connect
is queued too, as the pseudo-topic ``CONNECTED``, so the subclass asks the service for the
state again after every outage. A full queue drops the message with a warning: what it said
comes back with the next connect's request.
"""

from __future__ import annotations

__all__ = ["CONNECTED", "Inbox"]

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable

from edge_app.uplink import Transport

log = logging.getLogger(__name__)

CONNECTED = "connected"
"""The pseudo-topic queued on every (re)connect (no MQTT topic can be spelled so: they would
need a ``$aws/...`` or ``edge-app/...`` prefix to pass the policy)."""

# Longest real-time wait for work before ``stop`` is checked again, seconds.
_SLICE_S = 0.1
# Messages waiting beyond this many are dropped.
_QUEUE_MAX = 256


class Inbox(ABC):
    """Queues ``subscribed`` topics' messages from ``transport``; ``run()`` hands each to
    ``_dispatch`` until ``stop`` is set. ``name`` labels the log lines."""

    def __init__(self, transport: Transport, *, stop: threading.Event, name: str) -> None:
        self._transport = transport
        self._stop = stop
        self._name = name
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(_QUEUE_MAX)

    @abstractmethod
    def _subscribed(self) -> Iterable[str]:
        """The topics to subscribe to."""

    @abstractmethod
    def _dispatch(self, topic: str, payload: bytes) -> None:
        """Handle one message (``CONNECTED``: the link came up), on the ``run()`` thread."""

    def attach(self) -> None:
        """Subscribe and watch the connection; call before the transport connects."""
        for topic in self._subscribed():
            self._transport.subscribe(topic, self._put, qos=1)
        self._transport.on_connection_change(self._connection_changed)
        if self._transport.is_connected:
            self._put(CONNECTED, b"")

    def run(self) -> None:
        """Thread body: handle queued messages one by one until ``stop`` is set."""
        while not self._stop.is_set():
            try:
                topic, payload = self._queue.get(timeout=_SLICE_S)
            except queue.Empty:
                continue
            try:
                self._dispatch(topic, payload)
            except Exception:
                # One bad message must not end this thread's work for good.
                log.exception("%s message on %s could not be handled", self._name, topic)

    def _connection_changed(self, connected: bool) -> None:
        if connected:
            self._put(CONNECTED, b"")

    def _put(self, topic: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((topic, payload))
        except queue.Full:
            log.warning(
                "%s queue full: message on %s dropped (the next connect recovers)",
                self._name,
                topic,
            )
