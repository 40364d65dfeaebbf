"""The uplink seam: the ``Transport`` protocol, its ``PublishHandle``, and ``InMemoryTransport``.

A transport delivers a payload to a topic and reports, per publish, whether the broker
acknowledged it (QoS 1 PUBACK). It never drops silently: publishing while disconnected returns a
handle that has already failed, and losing the connection fails every unacknowledged handle, so
the caller (the drain loop) knows to keep the data.

``InMemoryTransport`` ships with the package for unit tests and for the demo without a broker.
"""

from __future__ import annotations

__all__ = [
    "ConnectionCallback",
    "InMemoryTransport",
    "MessageCallback",
    "PublishHandle",
    "PublishedMessage",
    "Transport",
    "topic_matches",
]

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge_app.errors import PublishRejectedError, UplinkError

_log = logging.getLogger(__name__)

ConnectionCallback = Callable[[bool], None]
"""Called with ``True`` when the transport becomes connected and ``False`` when it stops being."""

MessageCallback = Callable[[str, bytes], None]
"""Called with ``(topic, payload)`` for each message received on a subscribed topic filter."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching (``+`` one level, ``#`` the rest), as a broker does it.

    A filter starting with a wildcard never matches a topic starting with ``$`` (MQTT 4.7.2).
    """
    if topic.startswith("$") and topic_filter[:1] in {"+", "#"}:
        return False
    parts, levels = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part not in {"+", levels[i]}):
            return False
    return len(parts) == len(levels)


class PublishHandle:
    """The outcome of one publish, filled in later by the transport's network side.

    ``result`` is ``None`` for success (PUBACK with a success reason code) or the error:
    ``PublishRejectedError`` carrying the MQTT 5 reason code, or ``UplinkError`` when the
    connection was down or lost before the PUBACK. Thread-safe; the first outcome set wins.
    """

    __slots__ = ("_callbacks", "_done", "_error", "_lock", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: UplinkError | None = None
        self._callbacks: list[Callable[[PublishHandle], None]] = []

    @classmethod
    def failed(cls, topic: str, error: UplinkError) -> PublishHandle:
        """A handle that has already failed with ``error``."""
        handle = cls(topic)
        handle.set_result(error)
        return handle

    @property
    def done(self) -> bool:
        """True once the outcome is known."""
        return self._done.is_set()

    @property
    def result(self) -> UplinkError | None:
        """``None`` on success, else the error; ``UplinkError`` if the outcome is not known yet."""
        if not self._done.is_set():
            raise UplinkError(f"publish to {self.topic!r} has no outcome yet: wait() first")
        return self._error

    @property
    def ok(self) -> bool:
        """True when done and acknowledged with a success reason code."""
        return self._done.is_set() and self._error is None

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the outcome; True if it is known."""
        return self._done.wait(timeout)

    def add_done_callback(self, callback: Callable[[PublishHandle], None]) -> None:
        """Call ``callback(handle)`` once the outcome is known (at once if it already is).

        Callbacks run on whichever thread sets the outcome (for MQTT: paho's network thread),
        so they must be quick and must not block.
        """
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def set_result(self, error: UplinkError | None) -> bool:
        """Record the outcome (``None``: success). For transports; False if already set."""
        with self._lock:
            if self._done.is_set():
                return False
            self._error = error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                # A broken observer must not break the network thread that resolves handles.
                _log.exception("publish done-callback failed")
        return True


class Transport(Protocol):
    """How the uplink reaches the broker. Implementations: ``MqttTransport``,
    ``InMemoryTransport``. ``connect()`` must not raise because the broker is down: the device
    boots offline and the transport keeps trying on its own."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    @property
    def is_connected(self) -> bool: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        content_type: str | None = None,
    ) -> PublishHandle:
        """Send ``payload``; ``content_type`` (e.g. ``application/json+gzip``) goes out as the
        MQTT 5 Content Type property, so the consumer knows how to decode the payload."""
        ...

    def on_connection_change(self, callback: ConnectionCallback) -> None: ...

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        """Deliver messages matching ``topic_filter`` to ``callback`` from now on, including
        after every reconnect (the transport subscribes again by itself)."""
        ...


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    """A message the in-memory "broker" accepted."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    content_type: str | None = None


class InMemoryTransport:
    """A transport with a pretend broker in memory, driven by the test or the demo.

    Connected means ``connect()`` was called and the "network" is online (``set_online``).
    Accepted messages are appended to ``published`` (retained ones also kept in ``retained``).
    ``auto_ack=False`` holds PUBACKs until ``ack_pending()``; ``fail_next(n, code)`` makes the
    broker reject the next ``n`` publishes with an MQTT 5 reason code. Going offline or
    disconnecting fails every publish still waiting for its PUBACK (the broker may still have
    received it: that is how at-least-once duplicates arise). Thread-safe.
    """

    def __init__(self, *, online: bool = True, auto_ack: bool = True) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._online = online
        self._auto_ack = auto_ack
        self._fail_next = 0
        self._fail_code = 0x80
        self._waiting: deque[PublishHandle] = deque()
        self._callbacks: list[ConnectionCallback] = []
        self._subscriptions: list[tuple[str, MessageCallback]] = []
        self.published: list[PublishedMessage] = []
        self.rejected: list[PublishedMessage] = []
        self.retained: dict[str, bytes] = {}

    # -- Transport -------------------------------------------------------------------------

    def connect(self) -> None:
        """Start; connected at once if online."""
        self._change(started=True)

    def disconnect(self) -> None:
        """Stop; fails publishes waiting for their PUBACK."""
        self._change(started=False)

    @property
    def is_connected(self) -> bool:
        with self._lock:
            return self._started and self._online

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        content_type: str | None = None,
    ) -> PublishHandle:
        """Accept, reject or hold the message as configured; never raises for a down link.
        ``content_type`` is recorded with the message."""
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core has no QoS 2), got {qos}")
        message = PublishedMessage(topic, bytes(payload), qos, retain, content_type)
        handle = PublishHandle(topic)
        outcome: UplinkError | None = None
        with self._lock:
            if not (self._started and self._online):
                return PublishHandle.failed(topic, UplinkError("not connected to the broker"))
            if self._fail_next > 0:
                self._fail_next -= 1
                self.rejected.append(message)
                outcome = PublishRejectedError("rejected by in-memory broker", self._fail_code)
            else:
                self.published.append(message)
                if retain:
                    self.retained[topic] = message.payload
                if not self._auto_ack and qos == 1:
                    self._waiting.append(handle)
                    return handle
        handle.set_result(outcome)
        if outcome is None:
            self._deliver(topic, message.payload)
        return handle

    def on_connection_change(self, callback: ConnectionCallback) -> None:
        """Register ``callback(connected)``; called outside the transport's lock."""
        with self._lock:
            self._callbacks.append(callback)

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        """Register ``callback(topic, payload)`` for messages matching ``topic_filter``.

        Messages published through this transport, or handed in with ``inject``, are delivered
        synchronously on the publishing thread, outside the transport's lock.
        """
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core has no QoS 2), got {qos}")
        with self._lock:
            self._subscriptions.append((topic_filter, callback))

    # -- test controls ---------------------------------------------------------------------

    def inject(self, topic: str, payload: bytes) -> int:
        """Deliver a message "from the broker" to matching subscribers if connected.

        Returns how many callbacks received it (0 while offline: the message is lost, as a
        QoS 0 message to a disconnected client is).
        """
        if not self.is_connected:
            return 0
        return self._deliver(topic, bytes(payload))

    def set_online(self, online: bool) -> None:
        """Bring the pretend network up or down (down fails publishes awaiting PUBACK)."""
        self._change(online=online)

    def fail_next(self, count: int, reason_code: int = 0x80) -> None:
        """Reject the next ``count`` publishes with ``reason_code`` (>= 0x80, e.g. 0x97 quota)."""
        if count < 0 or reason_code < 0x80:
            raise ValueError("fail_next needs count >= 0 and a failure reason code >= 0x80")
        with self._lock:
            self._fail_next = count
            self._fail_code = reason_code

    def ack_pending(self, count: int | None = None) -> int:
        """Send PUBACKs for the oldest ``count`` held publishes (all if None); returns how many."""
        with self._lock:
            n = len(self._waiting) if count is None else min(count, len(self._waiting))
            handles = [self._waiting.popleft() for _ in range(n)]
        for handle in handles:
            handle.set_result(None)
        return n

    @property
    def pending(self) -> int:
        """Publishes accepted but not yet acknowledged (``auto_ack=False``)."""
        with self._lock:
            return len(self._waiting)

    # -- internals -------------------------------------------------------------------------

    def _deliver(self, topic: str, payload: bytes) -> int:
        with self._lock:
            targets = [cb for flt, cb in self._subscriptions if topic_matches(flt, topic)]
        for callback in targets:
            try:
                callback(topic, payload)
            except Exception:
                # A subscriber's bug must not fail the publisher, as with a real broker.
                _log.exception("message callback for %s failed", topic)
        return len(targets)

    def _change(self, *, started: bool | None = None, online: bool | None = None) -> None:
        with self._lock:
            before = self._started and self._online
            if started is not None:
                self._started = started
            if online is not None:
                self._online = online
            after = self._started and self._online
            lost = list(self._waiting) if before and not after else []
            if lost:
                self._waiting.clear()
            callbacks = list(self._callbacks) if before != after else []
        for handle in lost:
            handle.set_result(UplinkError("connection lost before the PUBACK"))
        for callback in callbacks:
            callback(after)
