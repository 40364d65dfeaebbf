"""The device side of the AWS IoT named shadow ``edge-config`` over any ``Transport``.

Topics (``ShadowTopics``), with ``P = $aws/things/{thing}/shadow/name/edge-config``:

    publish    P/get                  {"clientToken"}: ask for the whole document
    subscribe  P/get/accepted         the document: state.desired/reported/delta, version
    subscribe  P/get/rejected         {"code", "message", "clientToken"}; 404: no shadow
    subscribe  P/update/delta         {"state": {...desired minus reported...}, "version"}
    publish    P/update               {"state": {"reported": {...}}, "clientToken"}
    subscribe  P/update/rejected      a report the service refused (logged)
    subscribe  P/delete/accepted      {"version", "timestamp"}: the shadow was deleted

Messages arrive on the transport's network thread and are queued; ``run()`` (a thread the
composition root starts) takes them one at a time, so a model test-load never blocks MQTT and
changes are decided in arrival order. On every (re)connect a ``get`` is queued: whatever
changed while offline is applied, and a duplicate of what is already in force is stale. A
deleted shadow (``delete/accepted``, or ``get`` answered 404) resets the handler's version bar.
"""

from __future__ import annotations

__all__ = ["SHADOW_NAME", "ShadowClient", "ShadowTopics"]

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from edge_app.remote.handler import Kind, Outcome, ShadowHandler
from edge_app.remote.inbox import CONNECTED, Inbox
from edge_app.uplink import Transport

log = logging.getLogger(__name__)

SHADOW_NAME = "edge-config"
"""The named shadow that carries this app's remote configuration."""


@dataclass(frozen=True, slots=True)
class ShadowTopics:
    """The MQTT topics of one thing's named shadow (AWS IoT Device Shadow MQTT topics)."""

    thing: str
    name: str = SHADOW_NAME

    @property
    def prefix(self) -> str:
        return f"$aws/things/{self.thing}/shadow/name/{self.name}"

    @property
    def get(self) -> str:
        return f"{self.prefix}/get"

    @property
    def get_accepted(self) -> str:
        return f"{self.prefix}/get/accepted"

    @property
    def get_rejected(self) -> str:
        return f"{self.prefix}/get/rejected"

    @property
    def update(self) -> str:
        return f"{self.prefix}/update"

    @property
    def update_accepted(self) -> str:
        return f"{self.prefix}/update/accepted"

    @property
    def update_rejected(self) -> str:
        return f"{self.prefix}/update/rejected"

    @property
    def update_delta(self) -> str:
        return f"{self.prefix}/update/delta"

    @property
    def update_documents(self) -> str:
        return f"{self.prefix}/update/documents"

    @property
    def delete(self) -> str:
        return f"{self.prefix}/delete"

    @property
    def delete_accepted(self) -> str:
        return f"{self.prefix}/delete/accepted"

    @property
    def delete_rejected(self) -> str:
        return f"{self.prefix}/delete/rejected"

    @property
    def requests(self) -> tuple[str, ...]:
        """The topics the device publishes to: ``get`` and ``update`` (never ``delete``)."""
        return (self.get, self.update)

    @property
    def subscribed(self) -> tuple[str, ...]:
        """The answer topics the device subscribes to (and the IoT policy lets it receive)."""
        return (
            self.get_accepted,
            self.get_rejected,
            self.update_delta,
            self.update_rejected,
            self.delete_accepted,
        )


class ShadowClient(Inbox):
    """Feeds shadow messages from ``transport`` to ``handler`` and publishes its reports.

    Call ``attach()`` before the transport connects (it subscribes and watches the connection);
    run ``run()`` on a thread until ``stop`` is set. ``on_outcome`` (optional) is called on that
    thread after each decision, e.g. for metrics or tests.
    """

    def __init__(
        self,
        transport: Transport,
        handler: ShadowHandler,
        thing: str,
        *,
        stop: threading.Event,
        shadow: str = SHADOW_NAME,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        super().__init__(transport, stop=stop, name="shadow")
        self.topics = ShadowTopics(thing, shadow)
        self._handler = handler
        self._on_outcome = on_outcome
        self.outcomes = 0
        self._local: dict[int, tuple[dict[str, Any], str, Future[Outcome]]] = {}
        self._local_n = 0
        self._local_lock = threading.Lock()
        # The last local change's report, until a publish of it succeeds: a reconnect sends
        # it before the get, so the shadow's desired never undoes a change made offline.
        self._unsent: bytes | None = None

    def local_change(
        self, state: dict[str, Any], timeout_s: float, *, origin: str = "local"
    ) -> Outcome:
        """Decide on a change made on the device (``ShadowHandler.handle_local``) on this
        client's thread, in turn with shadow messages; waits up to ``timeout_s`` for the
        outcome (``TimeoutError`` if the thread is busy that long, e.g. loading a model).
        ``origin`` names the change's maker in the audit (``local``, ``job:<id>``)."""
        future: Future[Outcome] = Future()
        with self._local_lock:
            self._local_n += 1
            key = self._local_n
            self._local[key] = (state, origin, future)
        self._put("local", str(key).encode())
        return future.result(timeout_s)

    def report(self, reported: dict[str, Any]) -> None:
        """Publish a partial ``reported`` document (e.g. the last model update's outcome) on
        this client's thread; kept for the next connect while the link is down."""
        body = json.dumps({"state": {"reported": reported}}, separators=(",", ":")).encode()
        self._put("report", body)

    # -- internals -------------------------------------------------------------------------

    def _send_local(self, body: bytes) -> None:
        """Publish a local change's report, or keep it for the next connect when the link is
        down (a failed publish does not raise: the handle fails)."""
        self._unsent = body
        if not self._transport.is_connected:
            log.warning("local config change not yet in the shadow: sent on reconnect")
            return
        self._transport.publish(self.topics.update, body, qos=1)
        self._unsent = None

    def _subscribed(self) -> tuple[str, ...]:
        return self.topics.subscribed

    def _dispatch(self, topic: str, payload: bytes) -> None:
        t = self.topics
        if topic == CONNECTED:
            if self._unsent is not None:
                self._send_local(self._unsent)
            self._transport.publish(t.get, self._handler.get_request(), qos=1)
            return
        if topic == "report":
            self._send_local(payload)
            return
        if topic == "local":
            with self._local_lock:
                state, origin, future = self._local.pop(int(payload))
            try:
                local = self._handler.handle_local(state, origin=origin)
            except Exception as exc:
                future.set_exception(exc)
                raise
            future.set_result(local)
            if local.report is not None:
                self._send_local(json.dumps(local.report, separators=(",", ":")).encode())
            return
        if topic == t.get_rejected:
            self._handler.get_rejected(payload)
            return
        if topic == t.delete_accepted:
            self._handler.deleted(payload)
            return
        if topic == t.update_rejected:
            why = payload[:300].decode(errors="replace")
            log.warning("shadow service refused our report: %s", why)
            return
        kind: Kind = "get" if topic == t.get_accepted else "delta"
        outcome = self._handler.handle(kind, payload)
        if outcome.report is not None:
            body = json.dumps(outcome.report, separators=(",", ":")).encode()
            self._transport.publish(t.update, body, qos=1)
        self.outcomes += 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)
