"""AWS IoT rules emulated against Mosquitto: what ``EventsRule`` and ``StatusRule`` of
``deploy/aws/edge-app.yaml`` hand the consumer Lambda, built from real MQTT 5 messages.

The template's SQL, mirrored here (``tests/cloud/test_template.py`` checks the aliases)::

    SELECT 'events' AS kind, encode(*, 'base64') AS payload, topic(2) AS thing,
           get_mqtt_property('content_type') AS content_type, timestamp() AS received_ms
    FROM '<root>/+/events'
    SELECT 'status' AS kind, topic(2) AS thing, state, timestamp() AS received_ms
    FROM '<root>/+/status'

``target`` (e.g. the Lambda's ``handler`` bound to a ``None`` context) is called with each
output on paho's network thread, one message at a time, as an IoT rule invokes the function
once per message. A status that is not a JSON object, as the rule's SQL would find no
``state`` in, gives ``state: None``.
"""

from __future__ import annotations

__all__ = ["EVENTS_FIELDS", "STATUS_FIELDS", "IotRules"]

import base64
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from simulator.peer import SubscribingPeer

log = logging.getLogger(__name__)

EVENTS_FIELDS = ("kind", "payload", "thing", "content_type", "received_ms")
STATUS_FIELDS = ("kind", "thing", "state", "received_ms")


class IotRules(SubscribingPeer):
    """Subscribes to ``<root>/+/events`` and ``<root>/+/status``; calls ``target(output)``."""

    name = "iot rules"

    def __init__(
        self,
        host: str,
        port: int,
        target: Callable[[dict[str, Any]], object],
        *,
        root: str = "edge-app",
        tls: tuple[Path, Path, Path] | None = None,
        client_id: str = "iot-rules",
    ) -> None:
        super().__init__(
            host, port, [(f"{root}/+/events", 1), (f"{root}/+/status", 1)], client_id=client_id,
            tls=tls,
        )  # fmt: skip
        self._target = target
        self.errors: list[BaseException] = []
        """What ``target`` raised (an IoT rule would retry, then take its error action)."""

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        levels = msg.topic.split("/")
        received_ms = int(time.time() * 1000)
        if levels[-1] == "events":
            output: dict[str, Any] = {
                "kind": "events",
                "payload": base64.b64encode(msg.payload).decode(),
                "thing": levels[1],
                "content_type": getattr(msg.properties, "ContentType", None),
                "received_ms": received_ms,
            }
        else:
            try:
                doc = json.loads(msg.payload)
            except ValueError:
                doc = None
            state = doc.get("state") if isinstance(doc, dict) else None
            output = {"kind": "status", "thing": levels[1], "state": state}
            output["received_ms"] = received_ms
        try:
            self._target(output)
        except Exception as exc:
            log.exception("%s: target failed on %s", self.name, msg.topic)
            self.errors.append(exc)
