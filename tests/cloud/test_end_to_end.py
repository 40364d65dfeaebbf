"""From the device to S3: a real drain (gzip batches, mutual TLS) publishes through a real
Mosquitto; the IoT rules of the template, emulated there, invoke the Lambda handler, which
stores into moto. The whole cloud path of docs/aws.md, with no mock in between."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from edge_app.clock import SystemClock
from edge_app.config import TlsConfig
from edge_app.outbox import Outbox
from edge_app.uplink import DrainLoop, MqttTransport, codec, encode_batch, status_payload
from handler import handler
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.iot_rules import IotRules
from tests.cloud.conftest import Cloud
from tests.factories import DEVICE, make_event, wait_until


def test_device_events_reach_s3_and_its_status_the_device_table(
    tmp_path: Path, broker: Mosquitto, pki: Pki, cloud: Cloud
) -> None:
    clock = SystemClock()
    results: list[dict[str, Any]] = []
    status_topic = f"edge-app/{DEVICE}/status"
    with (
        IotRules(broker.host, broker.port, lambda out: results.append(handler(out, None))) as rules,
        Outbox(
            tmp_path / "outbox.db", clock=clock, device=DEVICE, max_bytes=2**26, max_age_s=3600
        ) as outbox,
    ):
        for _ in range(1200):
            outbox.enqueue(make_event(clock))
        transport = MqttTransport(
            broker.host,
            broker.tls_port,
            client_id=DEVICE,
            tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key),
            will=(status_topic, status_payload("offline")),
        )
        stop = threading.Event()
        drain = DrainLoop(
            outbox, transport, topic=f"edge-app/{DEVICE}/events", clock=clock, stop=stop,
            max_events=2000, encoder=encode_batch, compression=codec("gzip"),
        )  # fmt: skip
        with transport:
            assert drain.flush(30.0)
            assert wait_until(lambda: sum(r.get("accepted", 0) for r in results) == 1200)
            assert wait_until(lambda: cloud.device(DEVICE).get("state", {}).get("S") == "online")
        # disconnect() published the retained "stopped" status
        assert wait_until(lambda: cloud.device(DEVICE)["state"]["S"] == "stopped")
    assert rules.errors == []
    stored = [json.loads(line) for body in cloud.objects().values() for line in body.splitlines()]
    assert sorted(e["seq"] for e in stored) == list(range(1, 1201))
    batches = [r for r in results if r.get("status") == "accepted"]
    assert len(batches) == drain.stats().batches_sent < 1200 * 516 // 131_072
    device = cloud.device(DEVICE)
    assert (device["high"]["N"], device["missing"]["N"]) == ("1200", "0")
    assert handler({"kind": "sweep"}, None)["offline"] == []  # stopped just now, not for long
