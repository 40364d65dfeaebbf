"""The cloud-side MQTT peers' common part: connect, subscribe on every connect, count SUBACKs.

``CloudConsumer`` (events audit) and ``ShadowService`` (device-shadow emulator) differ only in
their topics and what they do with a message; this owns the paho client's lifecycle.
"""

from __future__ import annotations

__all__ = ["SubscribingPeer"]

import logging
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_app.uplink import stop_network_loop

log = logging.getLogger(__name__)


class SubscribingPeer:
    """A paho MQTT 5 client subscribed to ``topics`` (filter, QoS) after every (re)connect.

    ``start`` returns once the first SUBACK arrived; subclasses override ``_on_message``.
    ``tls`` is (CA, certificate, key) for a mutual-TLS listener. Use as a context manager.
    """

    name = "peer"

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[tuple[str, int]],
        *,
        client_id: str,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._topics = list(topics)
        self._subacks = 0  # one per (re)connection
        self._suback_changed = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if tls is not None:
            ca, cert, key = tls
            context = ssl.create_default_context(cafile=str(ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(cert), str(key))
            self._client.tls_set_context(context)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; returns once the broker acknowledged the subscriptions."""
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self.wait_subscribed(timeout):
            self.stop()
            raise TimeoutError(f"{self.name}: no SUBACK from {self._host}:{self._port}")

    def stop(self) -> None:
        self._client.disconnect()
        stop_network_loop(self._client)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def subscriptions(self) -> int:
        """How many times the subscriptions were acknowledged (1 + reconnections)."""
        with self._suback_changed:
            return self._subacks

    def wait_subscribed(self, timeout: float, *, more_than: int = 0) -> bool:
        """Block until more than ``more_than`` SUBACKs have arrived (pass ``subscriptions``
        read before a broker restart to wait for the re-subscription)."""
        with self._suback_changed:
            return self._suback_changed.wait_for(lambda: self._subacks > more_than, timeout)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("%s: connection refused: %s", self.name, rc)
            return
        client.subscribe(self._topics)  # paho reconnects by itself; this runs again then

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        rcs: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        with self._suback_changed:
            self._subacks += 1
            self._suback_changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Handle one message (paho's network thread); subclasses override."""
