"""Uplink lanes: how long a new event waits behind a snapshot and metrics backlog.

    python bench/lanes.py [--snapshots 300] [--minutes 1440] [--events 40] [--json]

Against one real Mosquitto on loopback, side by side in one run, three scenarios. In each, a
device that was offline has a backlog, connects, and raises ``--events`` new events, one every
0.2 s, while the backlog drains; a subscriber stamps when each event arrives. The drain runs at
AWS IoT Core's caps (100 publishes/s, 512 KB/s), window 20, ``max_wait_s`` 0 (no batching
delay, so the figure is the lanes' doing).

* **idle**: no backlog, for reference;
* **lanes**: ``--snapshots`` JPEG rows and ``--minutes`` of metric aggregates (a day, two
  dimension sets) in the snapshot and metrics lanes of the drain loop (this branch);
* **direct metrics**: the same backlog, but the metrics go the way they did before the lanes:
  a telemetry thread publishes the EMF documents straight on the transport (3,000 aggregates
  a step, then waits for their PUBACKs), outside the drain's rate limiter and priority.

Reported per scenario: the new events' delay from enqueue to arrival (median, max), the most
publishes and payload bytes in any one-second window measured at the sender (all topics), and
how long the backlog took. Timing on a shared 2-core machine is noisy: compare the columns of
one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.drain import _Recording, _window_max  # noqa: E402

THING = "bench-lanes"
PREFIX = f"edge-app/{THING}"


class _RecordingAll(_Recording):
    """Stamps every publish, whatever its topic."""

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, **kw: Any
    ) -> Any:
        self.stamps.append((time.monotonic(), len(payload)))
        return self.inner.publish(topic, payload, qos=qos, retain=retain, **kw)


def _jpeg(seed: int) -> bytes:
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 255, (540, 960, 3), dtype=np.uint8), (7, 7), 0)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    return bytes(buf.tobytes())


def _fill(work: Path, snapshots: int, minutes: int) -> tuple[int, int]:
    """Snapshot rows (with files) and a day of aggregates; returns (jpeg bytes, datums)."""
    from edge_app.outbox import LaneStore
    from edge_app.telemetry import MetricDatum
    from edge_app.uplink import snapshot_row

    root = work / "snapshots"
    root.mkdir(parents=True, exist_ok=True)
    size = 0
    with LaneStore(work / "outbox.db", "snapshots", max_rows=10**6) as lane:
        rows = []
        for i in range(snapshots):
            data = _jpeg(i % 8)
            size += len(data)
            (root / f"s{i}.jpg").write_bytes(data)
            rows.append((float(i), snapshot_row(f"E{i:06d}", f"s{i}.jpg")))
        lane.add(rows)
    start = time.time() - minutes * 60.0
    names = ["FramesProcessed", "Detections", "InferenceTime", "CameraFps", "FramesDropped"]
    dims = [(("camera", cam), ("device", THING)) for cam in ("dock", "gate")]
    datums = [
        MetricDatum(n, d, start + 60 * m, "Count", 6, 60.0, 8.0, 12.0, "counter")
        for m in range(minutes)
        for d in dims
        for n in names
    ]
    with LaneStore(work / "outbox.db", "metrics") as lane:
        lane.add([(d.ts, d.to_json()) for d in datums])
    return size, len(datums)


def _event(clock: Any) -> Any:
    from edge_app.domain import Event, ModelRef, Phase, Severity
    from edge_app.ids import new_ulid

    return Event(
        id=new_ulid(clock.time()), device=THING, camera="dock", rule="intrusion",
        phase=Phase.START, severity=Severity.HIGH, wall=clock.time(), mono=clock.monotonic(),
        label="person", score=0.87, bbox=(0.1, 0.2, 0.3, 0.4),
        model=ModelRef("ssd_mobilenet_v2_coco", "7046f31a72ec"),
    )  # fmt: skip


class _Arrivals:
    """The cloud side: stamps the arrival of each event id (monotonic s)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.at: dict[str, float] = {}
        self.ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cloud-{port}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self.ready.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(f"{PREFIX}/events", qos=1)
        self._client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        from edge_app.uplink import decode_batch

        now = time.monotonic()
        for event in decode_batch(bytes(message.payload))["events"]:
            self.at.setdefault(event["id"], now)

    def close(self) -> None:
        from edge_app.uplink import stop_network_loop

        self._client.disconnect()
        stop_network_loop(self._client)


def _direct_metrics(transport: Any, lane: Any, stop: threading.Event) -> None:
    """The old way: EMF documents published straight from a telemetry thread."""
    from edge_app.telemetry import MetricDatum, emf_documents

    while not stop.is_set() and (rows := lane.peek(3000)):
        docs = emf_documents([MetricDatum.from_json(r.body) for r in rows], "EdgeApp")
        handles = [
            transport.publish(f"{PREFIX}/metrics", json.dumps(d, separators=(",", ":")).encode())
            for d in docs
        ]
        if not all(h.wait(30.0) and h.result is None for h in handles):
            return
        lane.delete([r.id for r in rows])


def scenario(name: str, port: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from edge_app.clock import SystemClock
    from edge_app.outbox import LaneStore, Outbox
    from edge_app.telemetry import MetricsLaneSender
    from edge_app.uplink import DrainLoop, LaneSender, MqttTransport, SnapshotSender

    work.mkdir(parents=True)
    if name != "idle":
        _fill(work, args.snapshots, args.minutes)
    clock = SystemClock()
    db = work / "outbox.db"
    stop = threading.Event()
    transport = _RecordingAll(
        MqttTransport("127.0.0.1", port, client_id=f"{THING}-{name}", insecure_plaintext=True)
    )
    cloud = _Arrivals(port)
    with (
        Outbox(db, clock=clock, device=THING, max_bytes=1 << 30, max_age_s=1e9) as outbox,
        LaneStore(db, "snapshots") as snaps,
        LaneStore(db, "metrics") as metrics,
    ):
        lanes: list[LaneSender] = [SnapshotSender(snaps, work / "snapshots", topic_prefix=PREFIX)]
        if name == "lanes":
            lanes.append(MetricsLaneSender(metrics, topic=f"{PREFIX}/metrics", namespace="EdgeApp"))
        drain = DrainLoop(
            outbox, transport, topic=f"{PREFIX}/events", clock=clock, stop=stop,
            max_wait_s=0.0, window=20, lanes=lanes,
        )  # fmt: skip
        threads = [threading.Thread(target=drain.run, daemon=True)]
        if name == "direct metrics":
            threads.append(
                threading.Thread(target=_direct_metrics, args=(transport, metrics, stop))
            )
        transport.connect()
        start = time.monotonic()
        for thread in threads:
            thread.start()
        raised: dict[str, float] = {}
        for _ in range(args.events):
            time.sleep(0.2)
            event = outbox.enqueue(_event(clock))
            raised[event.id] = time.monotonic()
            drain.notify()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and (
            snaps.stats().rows or metrics.stats().rows or len(cloud.at) < len(raised)
        ):
            time.sleep(0.05)
        backlog_s = time.monotonic() - start
        stop.set()
        for thread in threads:
            thread.join(30)
        transport.inner.disconnect()
        cloud.close()
    delays = [1000 * (cloud.at[i] - t) for i, t in raised.items() if i in cloud.at]
    max_n, max_b = _window_max(transport.stamps)
    return {
        "scenario": name,
        "events_arrived": len(delays),
        "event_delay_ms_p50": round(statistics.median(delays), 1) if delays else None,
        "event_delay_ms_max": round(max(delays), 1) if delays else None,
        "max_publishes_per_s": max_n,
        "max_bytes_per_s": max_b,
        "seconds": round(backlog_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--snapshots", type=int, default=300)
    parser.add_argument("--minutes", type=int, default=1440)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from simulator.broker import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        size, datums = _fill(work / "probe", args.snapshots, 1)
        with Mosquitto(work / "broker") as broker:
            rows = [
                scenario(name, broker.port, work / name.replace(" ", "-"), args)
                for name in ("idle", "lanes", "direct metrics")
            ]
    result = {
        "snapshots": args.snapshots,
        "snapshot_kb_avg": round(size / max(args.snapshots, 1) / 1024, 1),
        "metric_minutes": args.minutes,
        "aggregates": datums * args.minutes,
        "events": args.events,
        "scenarios": rows,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"backlog: {args.snapshots} snapshots (avg {result['snapshot_kb_avg']} KB), "
        f"{args.minutes} minutes of metrics ({result['aggregates']} aggregates); "
        f"{args.events} new events, one every 0.2 s; caps 100 publishes/s, 524288 B/s"
    )
    header = ("scenario", "arrived", "delay p50 ms", "delay max ms", "max pub/s", "max B/s", "s")
    print("  ".join(f"{h:>14}" for h in header))
    for r in rows:
        cells = (r["scenario"], r["events_arrived"], r["event_delay_ms_p50"],
                 r["event_delay_ms_max"], r["max_publishes_per_s"], r["max_bytes_per_s"],
                 r["seconds"])  # fmt: skip
        print("  ".join(f"{c!s:>14}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
