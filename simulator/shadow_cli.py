"""``python -m simulator shadow``: the shadow-service emulator on the command line.

``shadow`` serves (``ShadowService``) until Ctrl-C or ``--duration``; ``shadow set KEY=VALUE
...`` sends a desired change (dotted keys, JSON values) as a cloud app would and waits for the
device's report; ``shadow delete`` deletes a thing's shadow (the device resets its version
bar, see the README's remote configuration section).
"""

from __future__ import annotations

__all__ = ["desired_from_pairs", "main", "register"]

import argparse
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.remote import ShadowTopics
from edge_app.uplink import stop_network_loop
from simulator.shadow import ShadowService

# (topic, decoded body) of one answer; returns True once it is the one waited for
_Answer = Callable[[str, dict[str, Any]], bool]


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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="broker host")
    common.add_argument("--port", type=int, default=1883, help="broker port")
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
    delete = actions.add_parser(
        "delete",
        parents=[common],
        help="delete the thing's shadow (the device keeps its config and accepts version 1 again)",
    )
    delete.add_argument("--thing", default="cam-001", help="thing name")
    delete.add_argument("--timeout", type=float, default=10.0, help="wait for the answer, s")


def main(args: argparse.Namespace) -> int:
    if args.shadow_action is None:
        return _serve(args)
    if args.shadow_action == "delete":
        return _delete(args)
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


def _exchange(
    args: argparse.Namespace, listen: list[str], request: str, body: str, answer: _Answer
) -> bool | None:
    """Subscribe to ``listen``, publish ``body`` on ``request``, and feed what arrives to
    ``answer`` until it returns True (then True) or ``args.timeout`` passes (False); None if
    the broker never acknowledged the subscription."""
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and answer(msg.topic, doc):
            done.set()

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe([(topic, 1) for topic in listen])
        # SUBACK before the request, so the answer cannot slip past
        if not subscribed.wait(args.timeout):
            print(f"no SUBACK from {args.host}:{args.port}")
            return None
        client.publish(request, body, qos=1).wait_for_publish(5.0)
        return done.wait(args.timeout)
    finally:
        client.disconnect()
        stop_network_loop(client)


def _set(args: argparse.Namespace, desired: dict[str, Any]) -> int:
    """Publish the change, then wait for the device's report of that version."""
    topics = ShadowTopics(args.thing, args.name)
    token = uuid.uuid4().hex[:16]
    answers: dict[str, dict[str, Any]] = {}
    version: list[int] = []

    def answer(topic: str, body: dict[str, Any]) -> bool:
        if topic == topics.update_rejected and body.get("clientToken") == token:
            answers["rejected"] = body
            return True
        if topic == topics.update_accepted:
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
                return True
        return False

    request = json.dumps({"state": {"desired": desired}, "clientToken": token})
    listen = [topics.update_accepted, topics.update_rejected]
    if _exchange(args, listen, topics.update, request, answer) is None:
        return 1
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


def _delete(args: argparse.Namespace) -> int:
    """Ask the service to delete the shadow; print its answer."""
    topics = ShadowTopics(args.thing, args.name)
    token = uuid.uuid4().hex[:16]
    answers: dict[str, dict[str, Any]] = {}

    def answer(topic: str, body: dict[str, Any]) -> bool:
        if body.get("clientToken") != token:
            return False
        answers[topic] = body
        return True

    listen = [topics.delete_accepted, topics.delete_rejected]
    request = json.dumps({"clientToken": token})
    got = _exchange(args, listen, topics.delete, request, answer)
    if got is None:
        return 1
    if not got:
        print(f"no answer from a shadow service on {args.host}:{args.port}")
        return 1
    if topics.delete_rejected in answers:
        print(f"shadow service refused the delete: {json.dumps(answers[topics.delete_rejected])}")
        return 1
    deleted = answers[topics.delete_accepted]["version"]
    print(f"shadow {args.name} of {args.thing} deleted at version {deleted}")
    return 0
