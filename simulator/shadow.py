"""A device-shadow service emulator over MQTT (the AWS IoT named-shadow protocol).

Against a real broker (Mosquitto in tests) it plays AWS IoT's Device Shadow service for every
thing and shadow name: it listens on ``$aws/things/+/shadow/name/+/get`` and ``.../update``
and answers on ``get/accepted|rejected``, ``update/accepted|rejected``, ``update/delta`` and
``update/documents``, following the AWS documents:

* a document has ``state.desired``, ``state.reported``, ``version`` (+1 per accepted update),
  ``metadata`` and ``timestamp``; ``get/accepted`` adds ``state.delta``;
* an update merges objects key by key, ``null`` deletes a key, arrays replace; an update
  naming ``version`` is refused with 409 unless it equals the current version;
* ``update/delta`` (desired values that differ from reported) is published only when an
  update changed ``desired`` and the difference is not empty;
* errors are ``{"code", "message", "timestamp", "clientToken"}``: 400 bad document, 404 no
  shadow, 409 version conflict, 413 payload over 8 KB.

``python -m simulator shadow`` runs it; ``python -m simulator shadow set KEY=VALUE ...`` sends
a desired change (dotted keys, JSON values) and waits for the device's report.
"""

from __future__ import annotations

__all__ = ["ShadowService", "delta_of", "desired_from_pairs", "main", "register"]

import argparse
import copy
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.config import merge_delta
from edge_app.uplink import stop_network_loop
from simulator.peer import SubscribingPeer

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 8 * 1024
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


def desired_from_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["detector.score_threshold=0.7", "rules=[...]"]`` as a nested desired document.

    Values are read as JSON, falling back to a plain string (``model=ssd_mobilenet_v1_coco``).
    """
    desired: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"expected KEY=VALUE with a dotted KEY, got {pair!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = desired
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key!r} goes through a value that is not an object")  # noqa: TRY004
        node[leaf] = value
    return desired


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

    def __init__(self, host: str, port: int, *, client_id: str = "shadow-service") -> None:
        topics = [("$aws/things/+/shadow/name/+/get", 1), ("$aws/things/+/shadow/name/+/update", 1)]
        super().__init__(host, port, topics, client_id=client_id)
        self._lock = threading.Condition()
        self._shadows: dict[tuple[str, str], _Shadow] = {}
        self.requests = 0

    # -- cloud-side API --------------------------------------------------------------------

    def set_desired(self, thing: str, desired: Mapping[str, Any], name: str = "edge-config") -> int:
        """Merge ``desired`` into the shadow as an ``update`` would; returns the new version."""
        body = json.dumps({"state": {"desired": dict(desired)}}).encode()
        answer = self._update(thing, name, body)
        return int(answer["version"])

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
        if op == "get":
            self._get(thing, name, bytes(msg.payload))
        else:
            self._update(thing, name, bytes(msg.payload))

    def _get(self, thing: str, name: str, payload: bytes) -> None:
        token = _token_of(payload)
        prefix = _PREFIX.format(thing=thing, name=name)
        with self._lock:
            shadow = self._shadows.get((thing, name))
            doc = copy.deepcopy(shadow.document(_now())) if shadow else None
        if doc is None:
            self._error(prefix + "/get", 404, f"No shadow exists with name: '{name}'", token)
            return
        if token is not None:
            doc["clientToken"] = token
        self._send(prefix + "/get/accepted", doc)

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
            shadow = self._shadows.setdefault((thing, name), _Shadow())
            expected = request.get("version")
            if expected is not None and expected != shadow.version:
                self._lock.notify_all()
                return self._error(prefix + "/update", 409, "Version conflict", token)
            previous = shadow.document(_now())
            for section in ("desired", "reported"):
                if section in state:
                    change = state[section]
                    current = getattr(shadow, section)
                    merged = {} if change is None else merge_delta(current, change)
                    setattr(shadow, section, merged)
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


# -- command line ------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1")
    common.add_argument("--port", type=int, default=1883)
    common.add_argument("--name", default="edge-config", help="shadow name")
    parser = sub.add_parser(
        "shadow",
        parents=[common],
        help="run a device-shadow service emulator, or `shadow set KEY=VALUE ...` a change",
    )
    parser.add_argument("--duration", type=float, default=None, help="serve this many seconds")
    actions = parser.add_subparsers(dest="shadow_action", metavar="ACTION")
    change = actions.add_parser(
        "set", parents=[common], help="send a desired change and wait for the device's report"
    )
    change.add_argument("pairs", nargs="+", metavar="KEY=VALUE", help="dotted key, JSON value")
    change.add_argument("--thing", default="cam-001", help="thing name")
    change.add_argument("--timeout", type=float, default=10.0, help="wait for the report, s")


def main(args: argparse.Namespace) -> int:
    if args.shadow_action is None:
        return _serve(args)
    try:
        desired = desired_from_pairs(args.pairs)
    except ValueError as exc:
        print(f"shadow set: {exc}")
        return 2
    return _set(args, desired)


def _serve(args: argparse.Namespace) -> int:
    with ShadowService(args.host, args.port):
        print(f"shadow service on {args.host}:{args.port}; Ctrl-C stops it", flush=True)
        end = None if args.duration is None else time.monotonic() + args.duration
        try:
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


def _set(args: argparse.Namespace, desired: dict[str, Any]) -> int:
    """Publish the change, then wait for the device's report of that version."""
    prefix = _PREFIX.format(thing=args.thing, name=args.name)
    token = uuid.uuid4().hex[:16]
    answers: dict[str, dict[str, Any]] = {}
    done = threading.Event()
    version: list[int] = []

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic.endswith("/update/rejected") and body.get("clientToken") == token:
            answers["rejected"] = body
            done.set()
        elif msg.topic.endswith("/update/accepted"):
            if body.get("clientToken") == token:
                version.append(int(body["version"]))
            config = body.get("state", {}).get("reported", {}).get("config")
            if (
                version
                and isinstance(config, dict)
                and (
                    config.get("version") == version[0]
                    or config.get("rejected_version") == version[0]
                )
            ):
                answers["report"] = config
                done.set()

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe([(prefix + "/update/accepted", 1), (prefix + "/update/rejected", 1)])
        # SUBACK before the change, so the report cannot slip past
        if not subscribed.wait(args.timeout):
            print(f"no SUBACK from {args.host}:{args.port}")
            return 1
        body = json.dumps({"state": {"desired": desired}, "clientToken": token})
        client.publish(prefix + "/update", body, qos=1).wait_for_publish(5.0)
        done.wait(args.timeout)
    finally:
        client.disconnect()
        stop_network_loop(client)
    if "rejected" in answers:
        print(f"shadow service refused the change: {json.dumps(answers['rejected'])}")
        return 1
    if not version:
        print(f"no answer from a shadow service on {args.host}:{args.port}")
        return 1
    report = answers.get("report")
    if report is None:
        print(f"desired v{version[0]} accepted; no device report within {args.timeout} s")
        return 1
    print(json.dumps({"version": version[0], "report": report}, indent=2))
    return 0 if report.get("status") == "applied" else 1
