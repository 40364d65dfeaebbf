"""Drain of a large backlog: edge_app's batched drain vs a naive one-publish-per-event drain.

    python bench/drain.py [--events 100000] [--naive-events 600] [--loopback-events 3000]
                          [--codecs none,gzip,zstd] [--json]

Fills an outbox (SQLite on the local disk) with ``--events`` realistic events, as a device
offline for a long time would, then runs, side by side in one run against one real Mosquitto
on loopback:

* **edge**: a separate process (so its RSS is its own) opens the outbox with the broker
  unreachable (an outage proxy that is down), then the proxy comes up as an emulated internet
  link of 40 ms round trip (20 ms each way, as from a device to an AWS region); it drains with
  ``DrainLoop`` under the IoT Core caps (100 publishes/s, 512 KB/s) and reports events/s,
  publishes/s and bytes/s (the highest count in any one-second window, measured at the sender),
  peak RSS growth over the idle process, and the time from "proxy up" to the first PUBACKed
  batch;
* **naive**: one QoS 1 publish per event, waiting for each PUBACK before the next, over the
  same 40 ms link (``--naive-events`` events, a subset: extrapolated to the full backlog, and
  labelled so). ``speedup`` compares the two over that same link.

Also printed, for the record: the naive drain on loopback (~0.1 ms round trips, which no real
link has), both as measured and held to IoT Core's 100 publishes/s (so at most 100 events/s),
and edge's speedup over that capped figure. That one has a ceiling the drain cannot pass: at
512 KB/s and ~520 bytes per realistic event (with its snapshot reference) no sender delivers
more than ~1,000 events/s, about 10x the capped 100 events/s.

The edge drain runs once per codec of ``--codecs`` (``uplink.compression``), each on a copy of
the same backlog and under the same caps; the ``compression`` rows give, per codec: wire bytes
per event, events/s, AWS IoT Core billed 5 KB units per 1,000 events (each publish is metered
as its payload + topic + content type, rounded up to 5 KB), the drain process's CPU time per
1,000 events (user + system, from the first publish to the last PUBACK) and the speedup over
``none``. The top-level ``edge_*`` figures are those of ``none``.

A cloud consumer (``simulator.cloud``) audits each edge drain: ``missing`` must be 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

THING = "bench-drain"
RECONNECT_MAX_S = 2.0
# Both drains run over an emulated internet link (the outage proxy's latency): 20 ms each way.
WAN_ONE_WAY_S = 0.02
# AWS IoT Core meters a publish in units of 5 KB (payload, topic and MQTT 5 properties).
BILLING_UNIT_BYTES = 5 * 1024
EVENTS_TOPIC = f"edge-app/{THING}/events"


def _rss_mb() -> float:
    """Resident set size of this process, MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _window_max(stamps: list[tuple[float, int]]) -> tuple[int, int]:
    """Most publishes and most bytes in any one-second window of ``(t, bytes)`` stamps."""
    best_n = best_b = 0
    window: deque[tuple[float, int]] = deque()
    total = 0
    for at, size in stamps:
        window.append((at, size))
        total += size
        while window[0][0] <= at - 1.0:
            total -= window.popleft()[1]
        best_n, best_b = max(best_n, len(window)), max(best_b, total)
    return best_n, best_b


def realistic_event(i: int, clock: Any) -> Any:
    """The ``i``-th of a series of events like the rules emit (track id, zone, snapshot
    reference), stamped with ``clock``; an ``edge_app.domain.Event`` without seq."""
    from edge_app.domain import Event, ModelRef, Phase, Severity, SnapshotRef
    from edge_app.ids import new_ulid

    event_id = new_ulid(clock.time())
    return Event(
        id=event_id,
        device=THING,
        camera="dock",
        rule=("intrusion", "loitering", "vehicle-in-lane")[i % 3],
        phase=(Phase.START, Phase.END)[i % 2],
        severity=(Severity.LOW, Severity.MEDIUM, Severity.HIGH)[i % 3],
        wall=clock.time(),
        mono=clock.monotonic(),
        label=("person", "car")[i % 2],
        score=0.5 + (i % 50) / 100,
        bbox=(0.1 + (i % 7) / 100, 0.2, 0.35, 0.41),
        model=ModelRef("ssd_mobilenet_v2_coco", "7046f31a72ec"),
        zone="gate-a",
        track_id=i % 997,
        # as SnapshotWriter records it: every pipeline event carries one
        snapshot=SnapshotRef(
            f"dock/2026-11-26/{event_id}.jpg",
            hashlib.sha256(event_id.encode()).hexdigest(),
            41_000 + i % 9000,
        ),
    )


def fill(path: Path, events: int) -> int:
    """Enqueue ``events`` realistic events (what the rules emit); returns stored bytes."""
    from edge_app.clock import SystemClock
    from edge_app.outbox import Outbox
    from edge_app.uplink import encode_batch

    clock = SystemClock()
    with Outbox(
        path, clock=clock, device=THING, max_bytes=1 << 30, max_age_s=1e9, encoder=encode_batch
    ) as box:
        for i in range(events):
            box.enqueue(realistic_event(i, clock))
        return box.stats().bytes


class _Recording:
    """A transport wrapper that stamps every publish (monotonic s, payload bytes)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stamps: list[tuple[float, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def is_connected(self) -> bool:
        return bool(self.inner.is_connected)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, **kw: Any
    ) -> Any:
        if topic.endswith("/events"):
            self.stamps.append((time.monotonic(), len(payload)))
        return self.inner.publish(topic, payload, qos=qos, retain=retain, **kw)


def _threads_cpu_s(names: tuple[str, ...]) -> float:
    """CPU seconds (user + system) used so far by this process's threads whose names start
    with one of ``names`` (Linux /proc): the drain and paho's network thread, without the
    benchmark's own samplers."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for thread in threading.enumerate():
        if thread.native_id is None or not thread.name.startswith(names):
            continue
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / tick


_MEASURED_THREADS = ("drain", "paho-mqtt-client-")


def edge_child(db: Path, port: int, compression: str) -> int:
    """Child process: drain ``db`` to 127.0.0.1:``port`` with ``compression``; prints one JSON
    line of figures."""
    from edge_app.clock import SystemClock
    from edge_app.outbox import Outbox
    from edge_app.uplink import DrainLoop, MqttTransport, RateLimiter, codec, encode_batch

    wire_codec = codec(compression)

    clock = SystemClock()
    box = Outbox(db, clock=clock, device=THING, max_bytes=1 << 30, max_age_s=1e9)
    total = box.stats().depth
    transport = _Recording(
        MqttTransport(
            "127.0.0.1",
            port,
            client_id=THING,
            insecure_plaintext=True,  # the plain listener the naive baseline uses too
            reconnect_min_s=0.5,
            reconnect_max_s=RECONNECT_MAX_S,
            inflight=100,
        )
    )
    stop = threading.Event()
    drain = DrainLoop(
        box, transport, topic=EVENTS_TOPIC, clock=clock, stop=stop,
        window=100, encoder=encode_batch, limiter=RateLimiter(clock=clock),
        compression=wire_codec,
    )  # fmt: skip
    idle = _rss_mb()
    peak = [idle]
    first_ack: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], _rss_mb())
            if not first_ack and drain.batches_sent:
                first_ack.append(time.time())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    transport.connect()
    runner = threading.Thread(target=drain.run, name="drain", daemon=True)
    runner.start()
    print("ready", flush=True)
    start = None
    cpu_start = 0.0
    while drain.events_sent < total:
        if start is None and transport.stamps:
            start, cpu_start = transport.stamps[0][0], _threads_cpu_s(_MEASURED_THREADS)
        time.sleep(0.01)
    end, cpu = time.monotonic(), _threads_cpu_s(_MEASURED_THREADS) - cpu_start
    stop.set()
    runner.join()
    sampling.set()
    sampler.join()
    transport.inner.disconnect()
    box.close()
    max_n, max_b = _window_max(transport.stamps)
    seconds = end - (start or end)
    metered = len(EVENTS_TOPIC) + len(wire_codec.content_type)
    units = sum(math.ceil((size + metered) / BILLING_UNIT_BYTES) for _, size in transport.stamps)
    print(
        json.dumps(
            {
                "events": total,
                "seconds": seconds,
                "publishes": len(transport.stamps),
                "bytes": sum(size for _, size in transport.stamps),
                "max_publishes_per_s": max_n,
                "max_bytes_per_s": max_b,
                "idle_rss_mb": idle,
                "rss_growth_mb": peak[0] - idle,
                "first_ack_wall": first_ack[0] if first_ack else None,
                "billed_units": units,
                "cpu_s": cpu,
            }
        ),
        flush=True,
    )
    return 0


def naive(db: Path, port: int, events: int) -> dict[str, float]:
    """One publish per event, each waiting for its PUBACK, over the first ``events`` events."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from edge_app.outbox import OutboxReader

    with OutboxReader(db) as reader:
        bodies = list(reader.bodies(events))
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-naive", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        start = time.perf_counter()
        for body in bodies:
            info = client.publish(f"edge-app/{THING}-naive/one", body.encode(), qos=1)
            info.wait_for_publish(10.0)
        seconds = time.perf_counter() - start
    finally:
        from edge_app.uplink import stop_network_loop

        client.disconnect()
        stop_network_loop(client)
    return {"events": len(bodies), "seconds": seconds}


def _edge_run(broker: Any, db: Path, work: Path, events: int, compression: str) -> Any:
    """The edge drain of a copy of ``db`` with ``compression``: (figures, audit, up wall)."""
    from simulator.broker import free_port
    from simulator.cloud import CloudConsumer
    from simulator.proxy import TcpProxy

    work.mkdir()
    copy = work / db.name
    shutil.copyfile(db, copy)  # closed cleanly by fill(): no -wal file to copy
    with (
        TcpProxy(free_port(), broker.host, broker.port) as proxy,
        CloudConsumer(broker.host, broker.port, topic=EVENTS_TOPIC) as cloud,
    ):
        proxy.slow(None, WAN_ONE_WAY_S)
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", str(copy), "--port", str(proxy.listen_port),
             "--compression", compression],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert child.stdout is not None
        child.stdout.readline()  # "ready": connecting to a proxy that is down
        time.sleep(1.0)  # let it fail a connect attempt or two, as after an outage
        up_wall = time.time()
        proxy.up()
        edge = json.loads(child.stdout.readline())
        child.wait(30)
        cloud.audit.wait_for_seq(events, 30.0)
        audit = cloud.audit.report()
    return edge, audit, up_wall


def _codec_row(name: str, edge: dict[str, Any], audit: Any, base_rate: float) -> dict[str, Any]:
    per_k = 1000 / edge["events"]
    rate = edge["events"] / edge["seconds"]
    return {
        "codec": name,
        "wire_bytes_per_event": round(edge["bytes"] / edge["events"], 1),
        "events_per_s": round(rate, 1),
        "drain_s": round(edge["seconds"], 1),
        "publishes": edge["publishes"],
        "billed_units_per_1000_events": round(edge["billed_units"] * per_k, 1),
        "cpu_ms_per_1000_events": round(edge["cpu_s"] * 1000 * per_k, 1),
        "max_publishes_per_s": edge["max_publishes_per_s"],
        "max_bytes_per_s": edge["max_bytes_per_s"],
        "speedup_vs_none": round(rate / base_rate, 1),
        "missing": audit.missing + max(0, edge["events"] - audit.last_seq),
    }


def run(
    events: int, naive_events: int, wan_events: int, work: Path, codecs: list[str]
) -> dict[str, Any]:
    from simulator.broker import Mosquitto, free_port
    from simulator.proxy import TcpProxy

    db = work / "outbox.db"
    t0 = time.perf_counter()
    stored = fill(db, events)
    fill_s = time.perf_counter() - t0
    with Mosquitto(work / "broker") as broker:
        naive_loop = naive(db, broker.port, naive_events)
        with TcpProxy(free_port(), broker.host, broker.port) as wan:
            wan.up()
            wan.slow(None, WAN_ONE_WAY_S)
            naive_wan = naive(db, wan.listen_port, wan_events)
        runs = {}
        for name in codecs:
            runs[name] = _edge_run(broker, db, work / name, events, name)
    edge, audit, up_wall = runs[codecs[0]]
    loop_rate = naive_loop["events"] / naive_loop["seconds"]
    loop_capped = min(loop_rate, 100.0)
    wan_rate = naive_wan["events"] / naive_wan["seconds"]
    edge_rate = edge["events"] / edge["seconds"]
    return {
        "events": events,
        "stored_mb": round(stored / 2**20, 1),
        "fill_s": round(fill_s, 1),
        "link_rtt_ms": round(2000 * WAN_ONE_WAY_S),
        "naive_subset_events": naive_wan["events"],
        "naive_events_per_s": round(wan_rate, 1),
        "naive_drain_s_extrapolated": round(events / wan_rate, 1),
        "edge_events_per_s": round(edge_rate, 1),
        "edge_drain_s": round(edge["seconds"], 1),
        "speedup": round(edge_rate / wan_rate, 1),
        "naive_loopback_events_per_s": round(loop_rate, 1),
        "naive_loopback_capped_events_per_s": round(loop_capped, 1),
        "speedup_vs_capped_loopback_naive": round(edge_rate / loop_capped, 1),
        "event_bytes_mean": round(stored / events),
        "publishes": edge["publishes"],
        "avg_publishes_per_s": round(edge["publishes"] / edge["seconds"], 1),
        "avg_bytes_per_s": round(edge["bytes"] / edge["seconds"]),
        "max_publishes_per_s": edge["max_publishes_per_s"],
        "max_bytes_per_s": edge["max_bytes_per_s"],
        "idle_rss_mb": round(edge["idle_rss_mb"], 1),
        "rss_growth_mb": round(edge["rss_growth_mb"], 1),
        "reachable_to_first_ack_s": (
            round(edge["first_ack_wall"] - up_wall, 2) if edge["first_ack_wall"] else None
        ),
        "reconnect_max_s": RECONNECT_MAX_S,
        "received": audit.received,
        "duplicates": audit.duplicates,
        "missing": audit.missing + max(0, events - audit.last_seq),
        "compression": [_codec_row(name, e, a, edge_rate) for name, (e, a, _) in runs.items()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--naive-events", type=int, default=600, help="naive subset over the 40 ms link"
    )
    parser.add_argument(
        "--loopback-events", type=int, default=3000, help="naive subset on loopback"
    )
    parser.add_argument(
        "--codecs",
        default="none,gzip,zstd",
        help="uplink.compression values to drain with, the first is the baseline",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compression", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return edge_child(args.child, args.port, args.compression)
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        codecs = args.codecs.split(",")
        result = run(args.events, args.loopback_events, args.naive_events, Path(tmp), codecs)
    if args.json:
        print(json.dumps(result))
    else:
        rows = result.pop("compression")
        for key, value in result.items():
            print(f"{key:>30}  {value}")
        print()
        print(" | ".join(rows[0]))
        for row in rows:
            print(" | ".join(str(v) for v in row.values()))
        result["compression"] = rows
    missing = result["missing"] + sum(row["missing"] for row in result["compression"])
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
