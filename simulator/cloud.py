"""The cloud side of the events topic: dedupe by ``id``, prove completeness by ``seq``.

Batches are decoded by their MQTT 5 content type (plain JSON, or compressed with
``uplink.compression``), as the Lambda in ``deploy/lambda`` does.

``Audit`` is pure bookkeeping over received batches; ``CloudConsumer`` feeds it from an MQTT
subscription. ``python -m simulator cloud`` prints the audit (``--json``: one object).
"""

from __future__ import annotations

__all__ = ["Audit", "AuditReport", "CloudConsumer", "main", "register"]

import argparse
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_app.errors import UplinkError
from edge_app.outbox import RECOVERY_RULE
from edge_app.uplink import decode_payload
from simulator.peer import SubscribingPeer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditReport:
    received: int
    unique: int
    duplicates: int
    missing: int
    out_of_order: int
    batches: int
    max_delivery_delay_s: float
    last_seq: int
    dropped: int = 0
    explained: int = 0
    """Absent seqs a device's recovery event named as lost with a damaged outbox (or skipped)."""


@dataclass
class Audit:
    """Bookkeeping of everything received; thread-safe."""

    ids: set[str] = field(default_factory=set)
    seqs: dict[str, set[int]] = field(default_factory=dict)  # device -> seqs seen
    received: int = 0
    batches: int = 0
    out_of_order: int = 0
    max_delay_s: float = 0.0
    dropped: int = 0  # events the device reported evicted or dead-lettered (batch "dropped")
    # device -> seq ranges its outbox-recovered events named as lost or skipped
    lost_ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    content_types: dict[str, int] = field(default_factory=dict)  # MQTT 5 content type -> batches
    _last_batch_seq: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def feed(
        self,
        batch: dict[str, Any],
        received_wall: float | None = None,
        *,
        content_type: str | None = None,
    ) -> None:
        """Account for one decoded batch payload (published with ``content_type``)."""
        now = time.time() if received_wall is None else received_wall
        device = str(batch.get("device", "?"))
        with self._changed:
            self.batches += 1
            kind = content_type or "none"
            self.content_types[kind] = self.content_types.get(kind, 0) + 1
            first = int(batch.get("first_seq", 0))
            if first <= self._last_batch_seq.get(device, 0):
                self.out_of_order += 1  # a redelivery, or batches overtaking each other
            self._last_batch_seq[device] = max(
                self._last_batch_seq.get(device, 0), int(batch.get("last_seq", 0))
            )
            self.dropped += sum(
                int(n) for by_sev in batch.get("dropped", {}).values() for n in by_sev.values()
            )
            seen = self.seqs.setdefault(device, set())
            for event in batch.get("events", []):
                self.received += 1
                if event["id"] in self.ids:
                    continue
                self.ids.add(event["id"])
                seen.add(int(event["seq"]))
                if event.get("rule") == RECOVERY_RULE:
                    ranges = [*event.get("seq_lost", []), event.get("seq_skipped")]
                    self.lost_ranges.setdefault(device, []).extend(
                        (int(r[0]), int(r[1])) for r in ranges if r
                    )
                self.events.append(event)
                ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
                self.max_delay_s = max(self.max_delay_s, now - ts)
            self._changed.notify_all()

    def report(self) -> AuditReport:
        with self._lock:
            # seq starts at 1 on a device: every absent seq below the highest seen is missing,
            # unless the device said it dropped it (eviction, dead letter: counted, not named)
            # or its recovery event named it lost with a damaged outbox (named by range)
            gaps = explained = 0
            for device, s in self.seqs.items():
                if not s:
                    continue
                absent = set(range(1, max(s) + 1)) - s
                gaps += len(absent)
                ranges = self.lost_ranges.get(device, [])
                explained += sum(1 for q in absent if any(a <= q <= b for a, b in ranges))
            missing = max(0, gaps - explained - self.dropped)
            return AuditReport(
                received=self.received,
                unique=len(self.ids),
                duplicates=self.received - len(self.ids),
                missing=missing,
                out_of_order=self.out_of_order,
                batches=self.batches,
                max_delivery_delay_s=round(self.max_delay_s, 3),
                last_seq=max((max(s) for s in self.seqs.values() if s), default=0),
                dropped=self.dropped,
                explained=explained,
            )

    def wait_for_seq(self, last_seq: int, timeout: float) -> bool:
        """Block until every seq 1..last_seq of some device has arrived, or ``timeout`` seconds."""

        wanted = range(1, last_seq + 1)

        def complete() -> bool:
            # every seq, not just as many: {2, 3, 4} holds three events but lacks seq 1
            return any(s.issuperset(wanted) for s in self.seqs.values())

        with self._changed:
            return self._changed.wait_for(complete, timeout=timeout)


class CloudConsumer(SubscribingPeer):
    """Subscribes to ``{prefix}/events`` (``+`` for every device) and feeds an ``Audit``."""

    name = "cloud consumer"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        topic: str = "edge-app/+/events",
        tls: tuple[Path, Path, Path] | None = None,
        client_id: str = "cloud-audit",
        audit: Audit | None = None,
    ) -> None:
        super().__init__(host, port, [(topic, 1)], client_id=client_id, tls=tls)
        self.audit = audit or Audit()
        self.topic = topic
        self.on_batch: Callable[[dict[str, Any]], None] | None = None

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        content_type = getattr(msg.properties, "ContentType", None)
        try:
            batch = json.loads(decode_payload(bytes(msg.payload), content_type))
        except (UplinkError, ValueError) as exc:
            log.error(
                "cloud consumer: payload on %s (%d bytes, content type %s) is not an events "
                "batch: %s",
                msg.topic,
                len(msg.payload),
                content_type,
                exc,
            )
            return
        self.audit.feed(batch, content_type=content_type)
        if self.on_batch is not None:
            self.on_batch(batch)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("cloud", help="consume the events topic and print a delivery audit")
    parser.add_argument("--host", default="127.0.0.1", help="broker host")
    parser.add_argument("--port", type=int, default=1883, help="broker port")
    parser.add_argument("--topic", default="edge-app/+/events", help="topic filter to audit")
    parser.add_argument("--ca", type=Path, help="CA certificate (PEM): mutual TLS")
    parser.add_argument("--cert", type=Path, help="client certificate (PEM)")
    parser.add_argument("--key", type=Path, help="client private key (PEM)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to listen")
    parser.add_argument("--json", action="store_true", help="print the audit as one JSON object")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    tls = (args.ca, args.cert, args.key) if args.ca and args.cert and args.key else None
    consumer = CloudConsumer(args.host, args.port, topic=args.topic, tls=tls)
    with consumer:
        time.sleep(args.duration)
    report = asdict(consumer.audit.report())
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>22}  {value}")
    return 0 if report["missing"] == 0 else 1
