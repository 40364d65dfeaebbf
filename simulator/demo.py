"""The demo: real model, real detections, network down, then up, batches delivered.

1. generate a clip from real photographs with exact ground truth (``simulator.scene``);
2. pull the default model if it is not cached (sha256-verified);
3. start Mosquitto with a mutual-TLS listener (the "IoT Core" of this demo) and a cloud-side
   consumer that audits what arrives;
4. run the appliance on the clip with its uplink behind a proxy that is *down*: events are
   raised, acted on and stored, nothing is delivered;
5. bring the network up: the appliance reconnects by itself and drains the outbox in batches;
6. print a summary (``--json``: one object).
"""

from __future__ import annotations

__all__ = ["DemoSummary", "run_demo"]

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_app.app import EdgeApp
from edge_app.config import parse_config
from edge_app.logs import configure_logging
from edge_app.models import default_model_dir, load_manifest, pull
from simulator.broker import Mosquitto, ensure_mosquitto, free_port
from simulator.certs import make_pki
from simulator.cloud import Audit, CloudConsumer
from simulator.proxy import TcpProxy
from simulator.scene import generate_scene

THING = "demo-cam"
RULES = [
    {"name": "person", "labels": ["person"], "min_score": 0.5, "severity": "high"},
    {"name": "vehicle", "labels": ["motorcycle", "bicycle", "car"], "min_score": 0.5},
    {"name": "animal", "labels": ["cat", "dog"], "min_score": 0.5, "severity": "low"},
]


@dataclass(frozen=True, slots=True)
class DemoSummary:
    frames: int
    detections: int
    events_raised: int
    events_raised_offline: int
    events_delivered: int
    batches: int
    duplicates: int
    missing: int
    max_delivery_delay_s: float
    truth_visits: dict[str, int]
    start_events: dict[str, int]


class _Printer:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)


def _config(workdir: Path, clip: Path, port: int, pki: Any, model: str) -> dict[str, Any]:
    return {
        "device": {"thing_name": THING, "site": "demo", "data_dir": str(workdir / "data")},
        "cameras": [{"name": "yard", "source": {"type": "file", "path": str(clip)}}],
        "detector": {"model": model, "threads": 2, "score_threshold": 0.4},
        "rules": [{**r, "min_frames": 3, "end_after_s": 1.0} for r in RULES],
        "uplink": {
            "host": "127.0.0.1",
            "port": port,
            "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)},
            "reconnect": {"min_s": 0.5, "max_s": 2.0},
            "batch": {"max_events": 3, "max_wait_s": 0.2},  # small, to show batching
        },
        # any free port: a daemon already running on this machine holds the default one
        "health": {"port": 0},
        "log_level": "warning",
    }


def run_demo(workdir: Path, *, seconds: float = 16.0, as_json: bool = False) -> int:
    """Run the demo in ``workdir`` (wiped of old data); returns 0 when nothing is missing."""
    say = _Printer(as_json)
    configure_logging("warning")
    workdir = workdir.resolve()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    for old in (workdir / "data").glob("outbox.db*"):
        old.unlink()  # each demo run starts from an empty outbox

    clip = workdir / "scene.mp4"
    truth = generate_scene(clip, workdir / "scene.json", seconds=seconds)
    visits = Counter(obj.label for obj in truth.objects)
    say(f"scene: {clip.name}, {truth.frames} frames, visits {dict(visits)} (exact ground truth)")

    spec = load_manifest().default_spec()
    model_path = pull(spec, default_model_dir(), progress=None)
    say(f"model: {spec.name} ({model_path.stat().st_size:,} B, sha256 {spec.sha256[:12]} verified)")

    ensure_mosquitto()
    pki = make_pki(workdir / "pki", thing=THING)
    audit = Audit()
    batches: list[str] = []
    with (
        Mosquitto(workdir / "broker", pki) as broker,
        TcpProxy(free_port(), broker.host, broker.tls_port) as network,
        CloudConsumer(broker.host, broker.port, audit=audit) as cloud,
    ):
        cloud.on_batch = lambda b: batches.append(
            f"batch {b['first_seq']}..{b['last_seq']} ({len(b['events'])} events)"
        )
        say(f"broker: mosquitto, mutual TLS on :{broker.tls_port}; cloud consumer subscribed")
        say("network: DOWN (the appliance's uplink is refused)")
        config = parse_config(_config(workdir, clip, network.listen_port, pki, str(model_path)))
        app = EdgeApp(config)
        app.start()
        try:
            app.wait()
            offline = app.stats()
            say(
                f"appliance: {offline.frames} frames, {offline.detections} detections, "
                f"{offline.events} events raised and stored offline, "
                f"{offline.events_sent} delivered, outbox depth {offline.outbox_depth}"
            )
            for label in sorted(visits):
                say(f"  ground truth: {visits[label]} {label} visit(s)")
            network.up()
            say("network: UP; the appliance reconnects by itself and drains its outbox")
            complete = audit.wait_for_seq(offline.last_seq, timeout=60.0)
            for line in batches:
                say(f"  cloud received {line}")
            if not complete:
                say("cloud: timed out waiting for every event")
        finally:
            app.stop(flush_timeout_s=5.0)
        events = audit.events
    report = audit.report()
    starts = Counter(e["label"] for e in events if e["phase"] == "start")
    summary = DemoSummary(
        frames=offline.frames,
        detections=offline.detections,
        events_raised=report.last_seq,
        events_raised_offline=offline.events,
        events_delivered=report.unique,
        batches=report.batches,
        duplicates=report.duplicates,
        missing=report.missing + max(0, offline.last_seq - report.last_seq),
        max_delivery_delay_s=report.max_delivery_delay_s,
        truth_visits=dict(visits),
        start_events=dict(starts),
    )
    _print_summary(summary, as_json)
    return 0 if summary.missing == 0 and summary.events_delivered > 0 else 1


def _print_summary(summary: DemoSummary, as_json: bool) -> None:
    if as_json:
        json.dump(asdict(summary), sys.stdout)
        print()
        return
    rows: list[tuple[str, object]] = [
        ("frames processed", summary.frames),
        ("detections", summary.detections),
        ("events raised offline", summary.events_raised_offline),
        ("events delivered", summary.events_delivered),
        ("batches", summary.batches),
        ("duplicates", summary.duplicates),
        ("missing", summary.missing),
        ("max delivery delay (s)", summary.max_delivery_delay_s),
    ]
    rows += [
        (f"{label}: visits / start events", f"{n} / {summary.start_events.get(label, 0)}")
        for label, n in sorted(summary.truth_visits.items())
    ]
    width = max(len(r[0]) for r in rows)
    print("\n  " + "-" * (width + 12))
    for name, value in rows:
        print(f"  {name:<{width}}  {value!s:>8}")
    print("  " + "-" * (width + 12))
    logging.getLogger(__name__).debug("demo summary %s", asdict(summary))
