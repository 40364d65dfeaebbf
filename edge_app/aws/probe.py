"""``MqttProbe``: one short MQTT 5 connection whose every step waits for the broker's answer.

The daemon's ``MqttTransport`` retries forever and never blocks; a diagnosis needs the
opposite: send CONNECT, SUBSCRIBE or PUBLISH and wait (bounded) for CONNACK, SUBACK or PUBACK,
then say what came back: success, a refusal with its MQTT 5 reason code ("Not authorized",
135), the connection closed instead (AWS IoT Core's answer to what its policy forbids), or
nothing at all. ``edge-app aws check`` and the least-privilege tests use it.

Clean session, no will, no automatic reconnect. Threads: paho's network thread fills in the
answers; the caller's thread waits on them. Use as a context manager (closes the connection
and the network thread).
"""

from __future__ import annotations

__all__ = ["Answer", "MqttProbe"]

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_app.uplink import stop_network_loop


@dataclass(frozen=True, slots=True)
class Answer:
    """The broker's answer to one request.

    ``ok``: accepted. Otherwise ``code`` is the MQTT 5 reason code of a refusal (135: not
    authorized), or None when the connection closed (``closed``) or nothing came back in time.
    ``reason`` says it in words, with the TLS or socket error when there was one.
    """

    ok: bool
    reason: str
    code: int | None = None
    closed: bool = False


class MqttProbe:
    """A synchronous MQTT 5 client for ``host:port``; ``context`` None means plain TCP.

    Every method waits at most ``timeout_s`` seconds for its answer.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        context: ssl.SSLContext | None,
        timeout_s: float = 10.0,
        keepalive_s: int = 30,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._closed: str | None = None
        self._last_error: str | None = None
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        if context is not None:
            self._client.tls_set_context(context)
        self._client.connect_timeout = timeout_s
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_log = self._on_log
        self._started = False

    def connect(self) -> Answer:
        """Open the connection and send CONNECT; the answer is the CONNACK (or its absence)."""
        try:
            self._client.connect(self.host, self.port, self._keepalive_s, clean_start=True)
        except (OSError, ssl.SSLError) as exc:  # socket.timeout and ssl errors are OSErrors
            return Answer(False, _os_reason(exc), closed=True)
        self._client.loop_start()
        self._started = True
        with self._cond:
            self._cond.wait_for(
                lambda: self._connack is not None or self._closed is not None, self._timeout_s
            )
            connack, closed = self._connack, self._closed
        if connack is not None:
            return _answer(connack)
        if closed is not None:
            return Answer(False, closed, closed=True)
        return Answer(False, f"no CONNACK within {self._timeout_s:g} s")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Answer:
        """QoS 1 publish; the answer is the PUBACK's reason code."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return Answer(False, self._closed or paho.error_string(info.rc), closed=True)
        return self._wait(lambda: self._pubacks.get(info.mid), _answer, "PUBACK")

    def subscribe(self, topic_filter: str) -> Answer:
        """QoS 1 subscription; the answer is the SUBACK's reason code for it."""
        result, mid = self._client.subscribe(topic_filter, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return Answer(False, self._closed or paho.error_string(result), closed=True)
        return self._wait(lambda: self._subacks.get(mid), lambda codes: _answer(codes[0]), "SUBACK")

    def wait_message(
        self, matches: Callable[[str, bytes], bool], timeout_s: float | None = None
    ) -> tuple[str, bytes] | None:
        """The first message received (now or within the timeout) for which ``matches``
        holds; None if none came or the connection closed."""

        def found() -> tuple[str, bytes] | None:
            return next(((t, p) for t, p in self.messages if matches(t, p)), None)

        with self._cond:
            self._cond.wait_for(
                lambda: found() is not None or self._closed is not None,
                self._timeout_s if timeout_s is None else timeout_s,
            )
            return found()

    def close(self) -> None:
        """Disconnect and stop the network thread. Idempotent."""
        if self._started:
            self._started = False
            self._client.disconnect()
            stop_network_loop(self._client)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _wait(
        self, get: Callable[[], Any], to_answer: Callable[[Any], Answer], what: str
    ) -> Answer:
        with self._cond:
            self._cond.wait_for(
                lambda: get() is not None or self._closed is not None, self._timeout_s
            )
            value, closed = get(), self._closed
        if value is not None:
            return to_answer(value)
        if closed is not None:
            return Answer(False, closed, closed=True)
        return Answer(False, f"no {what} within {self._timeout_s:g} s")

    def _on_connect(self, c: Any, u: Any, flags: Any, code: ReasonCode, props: Any) -> None:
        with self._cond:
            self._connack = code
            self._cond.notify_all()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, code: ReasonCode, props: Any) -> None:
        with self._cond:
            why = f"the broker closed the connection ({code})"
            if self._last_error:
                why += f": {self._last_error}"
            self._closed = why
            self._cond.notify_all()

    def _on_publish(self, c: Any, u: Any, mid: int, code: ReasonCode, props: Any) -> None:
        with self._cond:
            self._pubacks[mid] = code
            self._cond.notify_all()

    def _on_subscribe(self, c: Any, u: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        with self._cond:
            self._subacks[mid] = codes
            self._cond.notify_all()

    def _on_message(self, c: Any, u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _on_log(self, c: Any, u: Any, level: int, text: str) -> None:
        # paho reports a TLS alert received after the handshake (TLS 1.3: the broker refusing
        # our certificate) only in its log: "failed to receive on socket: [SSL: ...]".
        if level == paho.MQTT_LOG_ERR:
            self._last_error = text


def _answer(code: ReasonCode) -> Answer:
    # Reason codes below 0x80 are successes ("Granted QoS 1", "No matching subscribers").
    if code.value < 0x80:
        return Answer(True, str(code), int(code.value))
    return Answer(False, f"{code} (reason code {code.value})", int(code.value))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message} (verify code {exc.verify_code})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
