"""A device-shadow service emulator over MQTT (the AWS IoT named-shadow protocol).

Against a real broker (Mosquitto in tests) it plays AWS IoT's Device Shadow service for every
thing and shadow name: it listens on ``$aws/things/+/shadow/name/+/get``, ``.../update`` and
``.../delete`` and answers on ``get/accepted|rejected``, ``update/accepted|rejected``,
``update/delta``, ``update/documents`` and ``delete/accepted|rejected``, following the AWS
documents:

* a document has ``state.desired``, ``state.reported``, ``version`` (+1 per accepted update),
  ``metadata`` and ``timestamp``; ``get/accepted`` adds ``state.delta``;
* an update merges objects key by key, ``null`` deletes a key, arrays replace; an update
  naming ``version`` is refused with 409 unless it equals the current version;
* ``update/delta`` (desired values that differ from reported) is published only when an
  update changed ``desired`` and the difference is not empty;
* a delete removes the shadow and answers ``{"version", "timestamp"}`` on ``delete/accepted``
  to every subscriber; a shadow created again within ``deleted_version_memory_s`` (AWS: 48
  hours) continues the deleted one's versions, later it starts from 0 again;
* errors are ``{"code", "message", "timestamp", "clientToken"}``: 400 bad document, 404 no
  shadow, 409 version conflict, 413 payload over 8 KB or a state (desired and reported
  together, compact JSON) that would grow over 8 KB.

``python -m simulator shadow`` runs it (``simulator.shadow_cli``).
"""

from __future__ import annotations

__all__ = ["DELETED_VERSION_MEMORY_S", "MAX_DOCUMENT_BYTES", "ShadowService", "delta_of"]

import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from edge_app.config import merge_delta
from simulator.peer import SubscribingPeer

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 8 * 1024
"""Largest update payload, and largest state (desired and reported together), bytes."""
DELETED_VERSION_MEMORY_S = 48 * 3600.0
"""How long AWS IoT remembers a deleted shadow's version (a new one continues from it)."""
_PREFIX = "$aws/things/{thing}/shadow/name/{name}"


def delta_of(desired: Mapping[str, Any], reported: Mapping[str, Any]) -> dict[str, Any]:
    """Desired values that differ from reported ones (objects compared key by key)."""
    delta: dict[str, Any] = {}
    for key, want in desired.items():
        have = reported.get(key)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            inner = delta_of(want, have)
            if inner:
                delta[key] = inner
        elif want != have:
            delta[key] = copy.deepcopy(want)
    return delta


@dataclass
class _Shadow:
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    def document(self, now: int) -> dict[str, Any]:
        state: dict[str, Any] = {"desired": self.desired, "reported": self.reported}
        delta = delta_of(self.desired, self.reported)
        if delta:
            state["delta"] = delta
        return {"state": state, "metadata": {}, "version": self.version, "timestamp": now}


class ShadowService(SubscribingPeer):
    """The shadow service for every thing, on the broker at ``host:port`` (plain listener).

    Use as a context manager. Thread-safe; ``wait_for`` blocks until a condition on a shadow
    holds, ``set_desired`` updates ``desired`` as a cloud app would (and returns the version).
    """

    name = "shadow service"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "shadow-service",
        deleted_version_memory_s: float = DELETED_VERSION_MEMORY_S,
    ) -> None:
        ops = ("get", "update", "delete")
        topics = [(f"$aws/things/+/shadow/name/+/{op}", 1) for op in ops]
        super().__init__(host, port, topics, client_id=client_id)
        self._lock = threading.Condition()
        self._shadows: dict[tuple[str, str], _Shadow] = {}
        # deleted shadows: version, and time.monotonic() of the deletion
        self._deleted: dict[tuple[str, str], tuple[int, float]] = {}
        self._memory_s = deleted_version_memory_s
        self.requests = 0

    # -- cloud-side API --------------------------------------------------------------------

    def set_desired(self, thing: str, desired: Mapping[str, Any], name: str = "edge-config") -> int:
        """Merge ``desired`` into the shadow as an ``update`` would; returns the new version."""
        body = json.dumps({"state": {"desired": dict(desired)}}).encode()
        answer = self._update(thing, name, body)
        return int(answer["version"])

    def delete(self, thing: str, name: str = "edge-config") -> int | None:
        """Delete the shadow as a ``delete`` request would; returns the version deleted (None:
        there was no shadow, answered 404)."""
        answer = self._delete(thing, name, b"")
        return None if "code" in answer else int(answer["version"])

    def document(self, thing: str, name: str = "edge-config") -> dict[str, Any] | None:
        """A copy of the shadow document (None if the shadow does not exist)."""
        with self._lock:
            shadow = self._shadows.get((thing, name))
            return copy.deepcopy(shadow.document(_now())) if shadow else None

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        thing: str,
        timeout: float,
        name: str = "edge-config",
    ) -> bool:
        """Block until ``predicate(document)`` holds for the shadow, or ``timeout`` seconds."""

        def holds() -> bool:
            shadow = self._shadows.get((thing, name))
            return shadow is not None and predicate(shadow.document(_now()))

        with self._lock:
            return self._lock.wait_for(holds, timeout=timeout)

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish anything on any topic (e.g. a crafted or replayed delta), QoS 1."""
        self._client.publish(topic, payload, qos=1).wait_for_publish(5.0)

    # -- protocol --------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        # $aws / things / {thing} / shadow / name / {name} / get|update
        if len(parts) != 7:
            return
        thing, name, op = parts[2], parts[5], parts[6]
        self.requests += 1
        handler = {"get": self._get, "update": self._update, "delete": self._delete}.get(op)
        if handler is not None:
            handler(thing, name, bytes(msg.payload))

    def _get(self, thing: str, name: str, payload: bytes) -> dict[str, Any]:
        token = _token_of(payload)
        prefix = _PREFIX.format(thing=thing, name=name)
        with self._lock:
            shadow = self._shadows.get((thing, name))
            doc = copy.deepcopy(shadow.document(_now())) if shadow else None
        if doc is None:
            return self._error(prefix + "/get", 404, f"No shadow exists with name: '{name}'", token)
        if token is not None:
            doc["clientToken"] = token
        self._send(prefix + "/get/accepted", doc)
        return doc

    def _delete(self, thing: str, name: str, payload: bytes) -> dict[str, Any]:
        prefix = _PREFIX.format(thing=thing, name=name)
        token = _token_of(payload)
        with self._lock:
            shadow = self._shadows.pop((thing, name), None)
            if shadow is not None:
                self._deleted[(thing, name)] = (shadow.version, time.monotonic())
            self._lock.notify_all()
        if shadow is None:
            message = f"No shadow exists with name: '{name}'"
            return self._error(prefix + "/delete", 404, message, token)
        answer: dict[str, Any] = {"version": shadow.version, "timestamp": _now()}
        if token is not None:
            answer["clientToken"] = token
        self._send(prefix + "/delete/accepted", answer)
        return answer

    def _new_shadow(self, key: tuple[str, str]) -> _Shadow:
        """A shadow created by an update: it continues a recently deleted one's versions."""
        version, deleted_at = self._deleted.pop(key, (0, 0.0))
        recent = time.monotonic() - deleted_at < self._memory_s
        return _Shadow(version=version if recent else 0)

    def _update(self, thing: str, name: str, payload: bytes) -> dict[str, Any]:
        prefix = _PREFIX.format(thing=thing, name=name)
        token = _token_of(payload)
        if len(payload) > MAX_DOCUMENT_BYTES:
            return self._error(
                prefix + "/update", 413, "The payload exceeds the maximum size allowed", token
            )
        try:
            request = json.loads(payload)
        except ValueError:
            return self._error(prefix + "/update", 400, "Invalid JSON", token)
        state = request.get("state") if isinstance(request, dict) else None
        if not isinstance(state, dict):
            return self._error(prefix + "/update", 400, "Missing required node: state", token)
        outbox: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            shadow = self._shadows.get((thing, name)) or self._new_shadow((thing, name))
            expected = request.get("version")
            if expected is not None and expected != shadow.version:
                self._lock.notify_all()
                return self._error(prefix + "/update", 409, "Version conflict", token)
            previous = shadow.document(_now())
            merged = {
                section: {} if state[section] is None else merge_delta(current, state[section])
                for section, current in (("desired", shadow.desired), ("reported", shadow.reported))
                if section in state
            }
            after = {"desired": shadow.desired, "reported": shadow.reported, **merged}
            if len(json.dumps(after, separators=(",", ":"))) > MAX_DOCUMENT_BYTES:
                self._lock.notify_all()
                too_big = "The payload exceeds the maximum size allowed"
                return self._error(prefix + "/update", 413, too_big, token)
            self._shadows[(thing, name)] = shadow
            shadow.desired, shadow.reported = after["desired"], after["reported"]
            shadow.version += 1
            now = _now()
            accepted: dict[str, Any] = {
                "state": {k: state[k] for k in ("desired", "reported") if k in state},
                "metadata": {},
                "version": shadow.version,
                "timestamp": now,
            }
            if token is not None:
                accepted["clientToken"] = token
            outbox.append((prefix + "/update/accepted", accepted))
            delta = delta_of(shadow.desired, shadow.reported)
            if "desired" in state and delta:
                message: dict[str, Any] = {
                    "state": delta,
                    "metadata": {},
                    "version": shadow.version,
                    "timestamp": now,
                }
                if token is not None:
                    message["clientToken"] = token
                outbox.append((prefix + "/update/delta", message))
            current_doc = shadow.document(now)
            outbox.append(
                (
                    prefix + "/update/documents",
                    {"previous": previous, "current": current_doc, "timestamp": now},
                )
            )
            self._lock.notify_all()
        for topic, body in outbox:
            self._send(topic, body)
        return accepted

    def _error(
        self, request_topic: str, code: int, message: str, token: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"code": code, "message": message, "timestamp": _now()}
        if token is not None:
            body["clientToken"] = token
        self._send(request_topic + "/rejected", body)
        return body

    def _send(self, topic: str, body: Mapping[str, Any]) -> None:
        self._client.publish(topic, json.dumps(body, separators=(",", ":")), qos=1)


def _now() -> int:
    return int(time.time())


def _token_of(payload: bytes) -> str | None:
    try:
        doc = json.loads(payload) if payload else None
    except ValueError:
        return None
    token = doc.get("clientToken") if isinstance(doc, dict) else None
    return token if isinstance(token, str) else None
