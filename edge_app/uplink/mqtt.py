"""``MqttTransport``: the ``Transport`` over paho-mqtt 2, MQTT 5, QoS 1, mutual TLS.

Behaviour that matters for never losing data (the bugs Frigate users report against its
MQTT client: a publish dropped while disconnected, a failed CONNACK taken for success):

* ``connected`` is true only after a CONNACK with a success reason code.
* ``connect()`` never raises because the broker is down: paho's network thread
  (``loop_start``) keeps trying, with capped, jittered exponential backoff (``Backoff``).
* ``publish`` while disconnected returns a handle that has failed at once; losing the connection
  fails every handle still waiting for its PUBACK; a PUBACK with a failure reason code fails its
  handle with ``PublishRejectedError``. The caller keeps the data and retries.
* On each successful connect, paho's own queue of unacknowledged messages from the previous
  connection is dropped (the outbox re-sends them; keeping both would double every batch) and a
  retained ``online`` status is published; the retained ``offline`` status is the last will.

Threads: paho's network thread runs the callbacks; ``publish`` may be called from any thread.
Failures are logged once per change of state, with the reason but never key or cert contents.
"""

from __future__ import annotations

__all__ = ["MqttTransport", "status_payload", "stop_network_loop", "tls_context"]

import json
import logging
import random
import ssl
import sys
import threading
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_app.config import TlsConfig
from edge_app.errors import PublishRejectedError, UplinkError
from edge_app.uplink.backoff import Backoff
from edge_app.uplink.transport import (
    ConnectionCallback,
    MessageCallback,
    PublishHandle,
    topic_matches,
)

_log = logging.getLogger(__name__)

# How long disconnect() waits for the "stopped" status to be acknowledged, seconds.
_FAREWELL_WAIT_S = 2.0


def stop_network_loop(client: paho.Client) -> None:
    """Stop ``client``'s ``loop_start()`` thread and close every socket it holds.

    paho 2.2 opens a loopback socket pair (the network thread's wake-up channel) in
    ``loop_start()`` and closes it only when the ``Client`` is garbage-collected. A client in a
    reference cycle (its callbacks point back at their owner) is collected late and in no set
    order, so the pair is reported as a leaked socket at some unrelated moment; close it now.
    Call after ``disconnect()``; the client is not usable for ``loop_start()`` again.
    """
    client.loop_stop()
    client._reset_sockets()


def status_payload(state: str, **fields: Any) -> bytes:
    """A status message body: ``{"state": state, **fields}`` as compact JSON bytes."""
    return json.dumps({"state": state, **fields}, separators=(",", ":")).encode()


class MqttTransport:
    """One MQTT 5 connection to ``host:port`` (AWS IoT Core, or Mosquitto in tests).

    ``tls`` given: mutual TLS (TLS 1.2 or newer, broker certificate and host name verified).
    Plain TCP needs ``tls=None`` *and* ``insecure_plaintext=True`` (a test broker on a trusted
    network; ``connect()`` logs a warning), so leaving out ``tls`` cannot silently send the
    client id and every message in clear; either alone raises ``ValueError``. ``will`` is
    ``(topic, payload)`` of the retained last will (``offline``); ``birth`` (default: the will's
    topic with ``{"state": "online"}``) is published retained on every connect and ``farewell``
    (default ``{"state": "stopped"}``) on ``disconnect()``. Reconnect delays are jittered
    between ``reconnect_min_s`` and ``reconnect_max_s`` seconds. ``inflight`` bounds
    unacknowledged QoS 1 publishes (IoT Core: 100); more are queued by paho. The caller owns
    the transport and calls ``disconnect()``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        tls: TlsConfig | None = None,
        insecure_plaintext: bool = False,
        keepalive_s: int = 30,
        will: tuple[str, bytes] | None = None,
        birth: tuple[str, bytes] | None = None,
        farewell: tuple[str, bytes] | None = None,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        inflight: int = 20,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= inflight <= 65535:
            raise ValueError(f"inflight must be 1..65535 publishes, got {inflight}")
        if (tls is None) != insecure_plaintext:
            raise ValueError(
                "MqttTransport needs tls=TlsConfig(...) for mutual TLS, or tls=None with "
                "insecure_plaintext=True for plain TCP to a test broker"
            )
        self._host, self._port, self._tls = host, port, tls
        self._keepalive_s = keepalive_s
        self._will = will
        if will is not None:
            birth = birth or (will[0], status_payload("online", client_id=client_id))
            farewell = farewell or (will[0], status_payload("stopped"))
        self._birth, self._farewell = birth, farewell
        self._backoff = Backoff(reconnect_min_s, reconnect_max_s, rng)
        self._inflight = inflight
        self._lock = threading.Lock()
        self._connected = False
        self._started = False
        self._used = False
        self._epoch = 0  # bumped on every disconnect; a publish racing one is failed
        self._pending: dict[int, PublishHandle] = {}
        self._early: dict[int, UplinkError | None] = {}
        self._callbacks: list[ConnectionCallback] = []
        self._subscriptions: dict[str, tuple[int, list[MessageCallback]]] = {}
        # Touched only on paho's network thread: what was last logged, and whether the last
        # CONNACK was a refusal (so the disconnect that follows is not logged again).
        self._last_problem: str | None = None
        self._refused = False
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    # -- Transport -------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""
        with self._lock:
            return self._connected

    def connect(self) -> None:
        """Start connecting in the background and return at once.

        Raises ``UplinkError`` only for problems retrying cannot fix: unreadable TLS files or a
        second call. A down broker is retried forever (logged once per change of reason).
        """
        context = None if self._tls is None else tls_context(self._tls)
        with self._lock:
            if self._used:
                raise UplinkError(
                    "MqttTransport.connect() was already called: connect once, and make a new "
                    "transport after disconnect()"
                )
            self._started = self._used = True
        client = self._client
        if context is not None:
            client.tls_set_context(context)
        if self._will is not None:
            topic, payload = self._will
            client.will_set(topic, payload, qos=1, retain=True)
        client.max_inflight_messages_set(self._inflight)
        client.connect_async(self._host, self._port, keepalive=self._keepalive_s, clean_start=True)
        if context is None:
            _log.warning(
                "MQTT to %s:%d is NOT encrypted (uplink.insecure_plaintext: true): the thing "
                "name and every event cross the network readable and unauthenticated; set "
                "uplink.tls outside a trusted test network",
                self._host,
                self._port,
            )
        _log.info("connecting to MQTT broker %s:%d", self._host, self._port)
        client.loop_start()

    def disconnect(self) -> None:
        """Publish the ``stopped`` status if connected, close cleanly, stop the network thread.

        Every publish still waiting for its PUBACK fails. Idempotent.
        """
        with self._lock:
            if not self._started:
                return
            self._started = False
            connected = self._connected
        if connected and self._farewell is not None:
            topic, payload = self._farewell
            self.publish(topic, payload, qos=1, retain=True).wait(_FAREWELL_WAIT_S)
        self._client.disconnect()
        stop_network_loop(self._client)
        self._lost("transport disconnected")
        _log.info("disconnected from MQTT broker %s:%d", self._host, self._port)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        content_type: str | None = None,
    ) -> PublishHandle:
        """Send ``payload`` to ``topic``; the handle completes on PUBACK (QoS 1) or send (QoS 0).

        ``content_type`` is sent as the MQTT 5 Content Type property (AWS IoT rules read it
        with ``get_mqtt_property('content_type')``). Never raises for a down link: the
        returned handle has failed instead. Raises ``ValueError`` for a QoS other than 0 or 1
        and ``UplinkError`` for a topic paho refuses (both programming errors: topics come from
        the validated config).
        """
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core has no QoS 2), got {qos}")
        with self._lock:
            if not self._connected:
                return PublishHandle.failed(topic, UplinkError("not connected to the broker"))
            epoch = self._epoch
        try:
            # Not under our lock: paho calls on_publish while holding its own message lock,
            # which publish() also takes, so holding ours here could deadlock.
            info = self._client.publish(
                topic, payload, qos=qos, retain=retain, properties=_properties(content_type)
            )
        except ValueError as exc:
            raise UplinkError(f"cannot publish to {topic!r}: {exc}") from exc
        return self._track(topic, info, epoch)

    def on_connection_change(self, callback: ConnectionCallback) -> None:
        """Register ``callback(connected)``; it runs on paho's network thread, keep it quick."""
        with self._lock:
            self._callbacks.append(callback)

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        """Deliver messages matching ``topic_filter`` to ``callback(topic, payload)``.

        The subscription is sent now if connected and again after every reconnect (the session
        is clean, so the broker forgets it). Callbacks run on paho's network thread: hand the
        work to another thread instead of blocking there.
        """
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core has no QoS 2), got {qos}")
        with self._lock:
            _, callbacks = self._subscriptions.setdefault(topic_filter, (qos, []))
            callbacks.append(callback)
            connected = self._connected
        if connected:
            self._send_subscribe(topic_filter, qos)

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            # Not connected: the broker refused us (bad identity, not authorised, ...). paho
            # reports the closed socket next; that is the same problem, logged once.
            self._refused = True
            self._problem(f"broker refused the connection: {reason_code}")
            return
        # Unacknowledged messages of the last connection: the drain loop already failed their
        # handles and will lease the same events again, so paho must not re-send them too.
        client.drop_out_messages()
        self._backoff.reset()
        with self._lock:
            self._connected = True
            callbacks = list(self._callbacks)
            subscriptions = [(flt, qos) for flt, (qos, _) in self._subscriptions.items()]
        self._last_problem = None
        _log.info("connected to MQTT broker %s:%d", self._host, self._port)
        # Subscribed before the observers run, so a request they publish (a shadow ``get``)
        # cannot be answered before we listen for the answer.
        for topic_filter, qos in subscriptions:
            self._send_subscribe(topic_filter, qos)
        if self._birth is not None:
            topic, payload = self._birth
            handle = self.publish(topic, payload, qos=1, retain=True)
            handle.add_done_callback(_log_status_failure)
        for callback in callbacks:
            _safe_call(callback, True)

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        # paho calls this from inside its ``except OSError`` block, so the active exception is
        # the reason (refused, unreachable, TLS handshake failure).
        exc = sys.exception()
        self._problem(f"cannot connect: {exc}" if exc else "cannot connect")
        self._schedule_retry()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        was_connected = self._lost(f"connection lost ({reason_code})")
        refused, self._refused = self._refused, False
        with self._lock:
            stopping = not self._started
        if stopping:
            return
        if was_connected:
            self._problem(f"connection lost: {reason_code}")
        elif not refused:
            # With mutual TLS this is how a rejected client certificate looks from our side
            # (TLS 1.3 verifies it after our handshake has completed).
            hint = "; is this device's certificate accepted?" if self._tls else ""
            self._problem(f"connection closed before CONNACK: {reason_code}{hint}")
        self._schedule_retry()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        outcome: UplinkError | None = None
        if reason_code.is_failure:
            outcome = PublishRejectedError(str(reason_code), int(reason_code.value))
        with self._lock:
            handle = self._pending.pop(mid, None)
            if handle is None:
                # PUBACK before publish() registered the handle; _track() picks it up.
                self._early[mid] = outcome
                return
        handle.set_result(outcome)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            targets = [
                cb
                for flt, (_, cbs) in self._subscriptions.items()
                if topic_matches(flt, msg.topic)
                for cb in cbs
            ]
        for callback in targets:
            try:
                callback(msg.topic, bytes(msg.payload))
            except Exception:
                # A subscriber's bug must not kill paho's network thread.
                _log.exception("message callback for %s failed", msg.topic)

    # -- internals -------------------------------------------------------------------------

    def _send_subscribe(self, topic_filter: str, qos: int) -> None:
        try:
            result, _ = self._client.subscribe(topic_filter, qos=qos)
        except ValueError as exc:
            raise UplinkError(f"cannot subscribe to {topic_filter!r}: {exc}") from exc
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # The connection dropped meanwhile; the next CONNACK subscribes again.
            _log.info("subscribe to %s deferred: %s", topic_filter, paho.error_string(result))

    def _track(self, topic: str, info: paho.MQTTMessageInfo, epoch: int) -> PublishHandle:
        handle = PublishHandle(topic)
        error: UplinkError | None = None
        with self._lock:
            if info.mid in self._early:
                error = self._early.pop(info.mid)
            elif info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # paho queued it for a later connection; we fail it now and drop that copy on
                # reconnect (see _on_connect), so it is sent once, by the drain loop.
                error = UplinkError(f"publish not sent: {paho.error_string(info.rc)}")
            elif epoch != self._epoch or not self._connected:
                error = UplinkError("connection lost before the PUBACK")
            else:
                self._pending[info.mid] = handle
                return handle
        handle.set_result(error)
        return handle

    def _lost(self, why: str) -> bool:
        """The connection is gone: fail what waits for a PUBACK and tell the observers.

        Returns whether it had been connected.
        """
        with self._lock:
            was_connected = self._connected
            self._connected = False
            self._epoch += 1
            waiting = list(self._pending.values())
            self._pending.clear()
            callbacks = list(self._callbacks) if was_connected else []
        for handle in waiting:
            handle.set_result(UplinkError(f"{why} before the PUBACK"))
        for callback in callbacks:
            _safe_call(callback, False)
        return was_connected

    def _problem(self, reason: str) -> None:
        if reason != self._last_problem:
            self._last_problem = reason
            _log.warning("MQTT broker %s:%d: %s; retrying", self._host, self._port, reason)

    def _schedule_retry(self) -> None:
        # paho waits min_delay before the next attempt once its delay is reset, which
        # reconnect_delay_set() does; setting min = max = our jittered delay makes paho use it.
        delay = self._backoff.next()
        self._client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]  # floats work


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The client TLS context of ``tls``: TLS 1.2 or newer, the broker's certificate and host
    name verified against ``tls.ca``, ``tls.cert``/``tls.key`` presented. Raises
    ``UplinkError`` naming the files (never their contents) when they cannot be loaded."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError) as exc:
        # Paths only: the files' contents (the key) must never reach a log.
        raise UplinkError(
            f"cannot load TLS files (ca={tls.ca}, cert={tls.cert}, key={tls.key}): "
            f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc.args[-1]}; "
            "check the paths, that the key matches the certificate and is not encrypted"
        ) from exc
    return context


def _properties(content_type: str | None) -> Properties | None:
    """PUBLISH properties carrying ``content_type`` (None: no properties at all)."""
    if content_type is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: untyped
    props.ContentType = content_type
    return props


def _safe_call(callback: ConnectionCallback, connected: bool) -> None:
    try:
        callback(connected)
    except Exception:
        # An observer's bug must not kill paho's network thread.
        _log.exception("connection-change callback failed")


def _log_status_failure(handle: PublishHandle) -> None:
    if handle.result is not None:
        _log.warning("status message to %s not acknowledged: %s", handle.topic, handle.result)
