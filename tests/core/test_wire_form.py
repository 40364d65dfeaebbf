"""The wire form of events does not change with the types behind it (``SnapshotRef``,
``UpdateReason``/``EndReason``): representative events of every kind, made by the real
producers (rules, per-object lifecycle, tamper checks, the config audit, the outbox recovery,
health events),
stored in a real outbox and read back as the batch bodies the drain sends, are byte for byte
the JSON the code produced before those types existed (``EXPECTED``, captured from that code
with the same inputs; ids are random, so they are renamed ``ID<n>`` in order of appearance)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_app.clock import FakeClock
from edge_app.config import ConfigSnapshot, LastGoodStore, TamperConfig, parse_config
from edge_app.domain import (
    Detections,
    EndReason,
    Event,
    Frame,
    ModelRef,
    Severity,
    SnapshotRef,
    UpdateReason,
)
from edge_app.outbox import Outbox, SalvageReport, recovery_event
from edge_app.remote import ShadowHandler
from edge_app.telemetry import Condition, HealthEvents, HealthReport
from edge_app.vision.rules import EventContext, RuleEngine
from edge_app.vision.tamper import TamperMonitor, tamper_event

MODEL = ModelRef("ssd_mobilenet_v2_coco", "7046f31a72ec")
W0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
SNAP = SnapshotRef("dock/2026-09-21/01KA3V7Q9YJ5X0R4D2M8N6P1TZ.jpg", "ab" * 32, 41873)
COMPACT = (",", ":")
Row = tuple[str, list[float], float]
P: Row = ("person", [0.1, 0.2, 0.3, 0.9], 0.6)
BETTER: Row = ("person", [0.1, 0.2, 0.3, 0.9], 0.8)
OUT: Row = ("person", [0.7, 0.2, 0.9, 0.9], 0.6)  # outside the zone "bay"
BAY = [{"name": "bay", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]
# config_digest of the audited v7 config: a hash of the whole config document, so it follows
# the schema (a field added anywhere changes it), not the wire form of events.
DIGEST_V7 = (
    "26919f566e963395"  # ui, tracking, anomaly, classify; model-led preprocessing; model_updates
)


def dets(*rows: Row) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(
        np.array([r[1] for r in rows], np.float32),
        np.array([r[2] for r in rows], np.float32),
        np.zeros(len(rows), np.int32),
        tuple(r[0] for r in rows),
    )


def play(
    rules: list[dict[str, Any]],
    script: list[Detections],
    *,
    zones: list[dict[str, Any]] | None = None,
    finish: EndReason | None = None,
    wall0: float = W0,
) -> list[Event]:
    """The events of camera "dock" under ``rules``, one frame per entry of ``script`` at
    10 fps from ``wall0``, with ``finish`` ending what is open after the last frame."""
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-001"},
            "uplink": {"enabled": False},
            "cameras": [{"name": "dock", "source": {"type": "usb"}, "zones": zones or []}],
            "rules": rules,
        }
    )
    ctx = EventContext("cam-001", MODEL, 12)
    engine = RuleEngine(cfg.cameras[0], cfg.rules, ctx, utc_schedules=True)
    events: list[Event] = []
    frame = None
    for i, detections in enumerate(script):
        frame = Frame("dock", i, 100.0 + i / 10, wall0 + i / 10, np.zeros((4, 4, 3), np.uint8))
        events += engine.update(frame, detections)
    if finish is not None and frame is not None:
        events += engine.finish(frame.mono, frame.wall, finish)
    return events


def rule_events() -> list[Event]:
    out = play(
        [
            {
                "name": "intrusion",
                "labels": ["person"],
                "min_frames": 2,
                "end_after_s": 1.0,
                "severity": "high",
                "review_band": [0.5, 0.7],
            }
        ],
        [dets(P)] * 3 + [dets()] * 12,
    )
    out[0] = replace(out[0], snapshot=SNAP)  # what the camera loop attaches to a start
    out += play(
        [{"name": "crowd", "labels": ["person"], "min_count": 2, "min_frames": 1}],
        [dets(P, OUT)] * 2,
        finish=EndReason.SOURCE_ENDED,
    )
    forklift: Row = ("forklift", [0.2, 0.2, 0.4, 0.4], 0.9)
    out += play(
        [{"name": "empty", "labels": ["forklift"], "absent_for_s": 1.0, "min_frames": 1}],
        [dets()] * 12 + [dets(forklift)],
    )
    out += play(  # the window closes at 14:14 UTC, during the run
        [
            {
                "name": "night",
                "labels": ["person"],
                "min_frames": 1,
                "schedule": {"start": "00:00", "end": "14:14"},
            }
        ],
        [dets(P)] * 20,
        wall0=W0 + 39.0,
    )
    out += play(
        [{"name": "intrusion", "labels": ["person"], "min_frames": 1}],
        [dets(P)] * 2,
        finish=EndReason.CONFIG_CHANGED,
    )
    return out


def object_events() -> list[Event]:
    visitor = {
        "name": "visitor",
        "labels": ["person"],
        "per_object": True,
        "zone": "bay",
        "min_frames": 2,
        "end_after_s": 1.0,
    }
    walker = {
        "name": "walker",
        "labels": ["person"],
        "per_object": True,
        "min_frames": 2,
        "end_after_s": 1.0,
    }
    out = play(
        [visitor],
        [dets(P)] * 25 + [dets(BETTER)] * 3 + [dets(OUT)] * 15 + [dets()] * 15,
        zones=BAY,
    )
    out[0] = replace(out[0], extra={**out[0].extra, "clip": f"{out[0].id}.mp4"})  # the loop's
    assert out[1].update_reason is UpdateReason.BETTER_SNAPSHOT
    out += play(
        [visitor],
        [dets(P)] * 3 + [dets(OUT)] * 4 + [dets(P)] * 4,
        zones=BAY,
        finish=EndReason.SOURCE_ENDED,
    )
    out += play([walker], [dets(P)] * 3 + [dets()] * 15)
    out += play([walker], [dets(P)] * 3, finish=EndReason.SOURCE_ENDED)
    line = {"name": "gate", "labels": ["person"], "per_object": True, "min_frames": 2}
    walking = [("person", [0.1 + 0.05 * i, 0.2, 0.3 + 0.05 * i, 0.9], 0.8) for i in range(12)]
    out += play([{**line, "line": [[0.5, 0], [0.5, 1]]}], [dets(r) for r in walking])
    return out


def tamper_events() -> list[Event]:
    """A blocked lens (black frames after a textured warm-up), ended with the source."""
    monitor = TamperMonitor(TamperConfig(warmup_s=1.0, hold_s=0.5))
    texture = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    ctx = EventContext("cam-001", MODEL, 12)
    out: list[Event] = []
    for i in range(40):
        image = texture if i < 20 else np.zeros_like(texture)
        for step in monitor.update(100.0 + i / 10, image):
            mono, wall = 100.0 + i / 10, W0 + i / 10
            out.append(
                tamper_event(
                    step, ctx=ctx, camera="dock", severity=Severity.HIGH, mono=mono, wall=wall
                )
            )
    for step in monitor.finish():
        out.append(
            tamper_event(
                step,
                ctx=ctx,
                camera="dock",
                severity=Severity.HIGH,
                mono=104.0,
                wall=W0 + 4.0,
                start_id=out[0].id,
            )
        )
    return out


class Applier:
    """The remote ``Applier`` seam: accepts every config."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot

    def current(self) -> ConfigSnapshot:
        return self.snapshot

    def model(self) -> ModelRef:
        return MODEL

    def apply(self, config: Any, remote_version: int) -> ConfigSnapshot:
        self.snapshot = ConfigSnapshot.of(config, "remote", remote_version)
        return self.snapshot


def audit_events(data: Path) -> list[Event]:
    """The audit events of an applied and a rejected shadow delta."""
    cfg = parse_config(
        {
            "device": {"thing_name": "cam-001"},
            "uplink": {"enabled": False},
            "cameras": [{"name": "dock", "source": {"type": "usb"}}],
            "rules": [{"name": "intrusion", "labels": ["person"]}],
        }
    )
    out: list[Event] = []
    handler = ShadowHandler(
        cfg,
        Applier(ConfigSnapshot.of(cfg, "file", None)),
        LastGoodStore(data),
        models=["ssd_mobilenet_v2_coco"],
        clock=FakeClock(wall=W0),
        audit=out.append,
    )
    for version, state in (
        (7, {"detector": {"score_threshold": 0.6}}),
        (8, {"uplink": {"host": "evil.example"}}),
    ):
        handler.handle("delta", json.dumps({"state": state, "version": version}).encode())
    return out


def recovery_events() -> list[Event]:
    clock = FakeClock(wall=W0)
    salvaged = SalvageReport(
        kept_at="/var/lib/edge-app/outbox.db.damaged-20260921T000000Z",
        problem="database disk image is malformed",
        events=120,
        unreadable=3,
        exact=True,
        seq_lost=((41, 43),),
        seq_skipped=(121, 1120),
        lane_rows=7,
        damaged_pages=(12,),
        last_seq=1120,
    )
    failed = SalvageReport(
        kept_at="/x/outbox.db.damaged",
        problem="file is not a database",
        exact=False,
        error="disk full",
    )
    return [recovery_event("cam-001", MODEL, r, clock) for r in (salvaged, failed)]


def health_events() -> list[Event]:
    """A condition that clears (``cleared``) and one open when the app stops (``stopped``)."""
    clock = FakeClock(wall=W0)
    out: list[Event] = []
    events = HealthEvents(out.append, device="cam-001", model=lambda: MODEL, clock=clock)
    stale = Condition("camera_stale", "dock", "camera dock stale: no frame for 31 s")
    disk = Condition("disk_low", "", "disk low: 3% free")
    events.observe(HealthReport("degraded", conditions=(stale,)))
    clock.advance(12.34)
    events.observe(HealthReport("degraded", conditions=(disk,)))
    clock.advance(5)
    events.close()
    return out


def renamed(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``docs`` with each event id (and the ids that refer to one) renamed ``ID<n>``."""
    names: dict[str, str] = {}

    def name(event_id: str) -> str:
        return names.setdefault(event_id, f"ID{len(names) + 1}")

    out = []
    for doc in docs:
        new = {**doc, "id": name(doc["id"])}
        if "start_id" in new:
            new["start_id"] = name(new["start_id"])
        if "clip" in new:
            new["clip"] = name(new["clip"].removesuffix(".mp4")) + ".mp4"
        out.append(new)
    return out


# seqs of EXPECTED among the events made (the starts of most episodes are left out: they are
# made as every other start is)
PICKED = (1, 2, 4, 6, 8, 10, 11, 12, 13, 14, 17, 20, 23, 24, 25, 26, 27, 28, 29, 30, 31, 33)


@pytest.mark.slow
def test_every_kind_of_event_has_the_wire_form_it_had(tmp_path: Path, outbox: Outbox) -> None:
    made = rule_events() + object_events() + tamper_events()
    made += audit_events(tmp_path) + recovery_events() + health_events()
    for event in made:
        outbox.enqueue(event)
    batch = outbox.lease(1000, 1 << 20)
    assert batch is not None
    sent = renamed([json.loads(body) for body in batch.events])
    assert [d["seq"] for d in sent] == list(range(1, len(made) + 1))
    picked = [sent[seq - 1] for seq in PICKED]
    as_sent = [json.dumps(d, separators=COMPACT) for d in picked]
    assert as_sent == [json.dumps(d, separators=COMPACT) for d in EXPECTED]


def test_reasons_read_back_typed_and_compare_as_their_wire_strings() -> None:
    [start, end] = play(
        [{"name": "intrusion", "labels": ["person"], "min_frames": 1, "end_after_s": 1.0}],
        [dets(P)] + [dets()] * 12,
    )
    assert end.end_reason is EndReason.GONE
    assert end.extra["end_reason"] == "gone"  # a StrEnum: the JSON is the plain string
    assert (start.end_reason, start.update_reason, end.update_reason) == (None, None, None)
    assert replace(start, snapshot=SNAP).to_json()["snapshot"] == {
        "file": SNAP.file,
        "sha256": SNAP.sha256,
        "bytes": SNAP.bytes,
    }


EXPECTED: list[dict[str, Any]] = [
    {
        "id": "ID1",
        "seq": 1,
        "device": "cam-001",
        "camera": "dock",
        "rule": "intrusion",
        "phase": "start",
        "severity": "high",
        "ts": "2026-09-21T14:13:20.100Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": True,
        "snapshot": {
            "file": "dock/2026-09-21/01KA3V7Q9YJ5X0R4D2M8N6P1TZ.jpg",
            "sha256": "abababababababababababababababababababababababababababababababab",
            "bytes": 41873,
        },
    },
    {
        "id": "ID2",
        "seq": 2,
        "device": "cam-001",
        "camera": "dock",
        "rule": "intrusion",
        "phase": "end",
        "severity": "high",
        "ts": "2026-09-21T14:13:21.200Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": True,
        "start_id": "ID1",
        "duration_s": 0.1,
        "end_reason": "gone",
    },
    {
        "id": "ID4",
        "seq": 4,
        "device": "cam-001",
        "camera": "dock",
        "rule": "crowd",
        "phase": "end",
        "severity": "medium",
        "ts": "2026-09-21T14:13:20.100Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "start_id": "ID3",
        "duration_s": 0.1,
        "end_reason": "source ended",
    },
    {
        "id": "ID6",
        "seq": 6,
        "device": "cam-001",
        "camera": "dock",
        "rule": "empty",
        "phase": "end",
        "severity": "medium",
        "ts": "2026-09-21T14:13:21.200Z",
        "label": "forklift",
        "score": 0.0,
        "bbox": [0.0, 0.0, 1.0, 1.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "start_id": "ID5",
        "duration_s": 0.1,
        "end_reason": "present",
    },
    {
        "id": "ID8",
        "seq": 8,
        "device": "cam-001",
        "camera": "dock",
        "rule": "night",
        "phase": "end",
        "severity": "medium",
        "ts": "2026-09-21T14:14:00.000Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "start_id": "ID7",
        "duration_s": 0.9,
        "end_reason": "outside schedule",
    },
    {
        "id": "ID10",
        "seq": 10,
        "device": "cam-001",
        "camera": "dock",
        "rule": "intrusion",
        "phase": "end",
        "severity": "medium",
        "ts": "2026-09-21T14:13:20.100Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "start_id": "ID9",
        "duration_s": 0.1,
        "end_reason": "config changed",
    },
    {
        "id": "ID11",
        "seq": 11,
        "device": "cam-001",
        "camera": "dock",
        "rule": "visitor",
        "phase": "start",
        "severity": "medium",
        "ts": "2026-09-21T14:13:20.100Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": "bay",
        "track_id": 1,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "clip": "ID11.mp4",
    },
    {
        "id": "ID12",
        "seq": 12,
        "device": "cam-001",
        "camera": "dock",
        "rule": "visitor",
        "phase": "update",
        "severity": "medium",
        "ts": "2026-09-21T14:13:22.500Z",
        "label": "person",
        "score": 0.8,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": "bay",
        "track_id": 1,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "update_reason": "better snapshot",
        "start_id": "ID11",
    },
    {
        "id": "ID13",
        "seq": 13,
        "device": "cam-001",
        "camera": "dock",
        "rule": "visitor",
        "phase": "update",
        "severity": "medium",
        "ts": "2026-09-21T14:13:22.900Z",
        "label": "person",
        "score": 0.8,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": "bay",
        "track_id": 1,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "update_reason": "left zone",
        "start_id": "ID11",
    },
    {
        "id": "ID14",
        "seq": 14,
        "device": "cam-001",
        "camera": "dock",
        "rule": "visitor",
        "phase": "end",
        "severity": "medium",
        "ts": "2026-09-21T14:13:23.900Z",
        "label": "person",
        "score": 0.8,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": "bay",
        "track_id": 1,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "duration_s": 3.8,
        "end_reason": "left zone",
        "start_id": "ID11",
    },
    {
        "id": "ID17",
        "seq": 17,
        "device": "cam-001",
        "camera": "dock",
        "rule": "visitor",
        "phase": "update",
        "severity": "medium",
        "ts": "2026-09-21T14:13:20.800Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": "bay",
        "track_id": 1,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "update_reason": "entered zone",
        "start_id": "ID15",
    },
    {
        "id": "ID20",
        "seq": 20,
        "device": "cam-001",
        "camera": "dock",
        "rule": "walker",
        "phase": "end",
        "severity": "medium",
        "ts": "2026-09-21T14:13:21.300Z",
        "label": "person",
        "score": 0.6,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": None,
        "track_id": 1,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "duration_s": 0.1,
        "end_reason": "gone",
        "start_id": "ID19",
    },
    {
        "id": "ID23",
        "seq": 23,
        "device": "cam-001",
        "camera": "dock",
        "rule": "gate",
        "phase": "start",
        "severity": "medium",
        "ts": "2026-09-21T14:13:20.600Z",
        "label": "person",
        "score": 0.8,
        "bbox": [0.1, 0.2, 0.3, 0.9],
        "zone": None,
        "track_id": 1,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "crossed": "right_to_left",
        "instant": True,
    },
    {
        "id": "ID24",
        "seq": 24,
        "device": "cam-001",
        "camera": "dock",
        "rule": "tamper_blocked",
        "phase": "start",
        "severity": "high",
        "ts": "2026-09-21T14:13:22.500Z",
        "label": "tamper",
        "score": 1.0,
        "bbox": [0.0, 0.0, 1.0, 1.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "sharpness": 0.0,
        "std": 0.0,
        "mean": 0.0,
        "moved": 1.0,
    },
    {
        "id": "ID25",
        "seq": 25,
        "device": "cam-001",
        "camera": "dock",
        "rule": "tamper_blocked",
        "phase": "end",
        "severity": "high",
        "ts": "2026-09-21T14:13:24.000Z",
        "label": "tamper",
        "score": 1.0,
        "bbox": [0.0, 0.0, 1.0, 1.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 12,
        "review": False,
        "end_reason": "source ended",
        "start_id": "ID24",
    },
    {
        "id": "ID26",
        "seq": 26,
        "device": "cam-001",
        "camera": "-",
        "rule": "config",
        "phase": "update",
        "severity": "low",
        "ts": "2026-09-21T14:13:20.000Z",
        "label": "applied",
        "score": 1.0,
        "bbox": [0.0, 0.0, 0.0, 0.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 7,
        "review": False,
        "config": {
            "status": "applied",
            "version": 7,
            "digest": DIGEST_V7,
            "errors": [],
            "more_errors": 0,
        },
    },
    {
        "id": "ID27",
        "seq": 27,
        "device": "cam-001",
        "camera": "-",
        "rule": "config",
        "phase": "update",
        "severity": "medium",
        "ts": "2026-09-21T14:13:20.000Z",
        "label": "rejected",
        "score": 0.0,
        "bbox": [0.0, 0.0, 0.0, 0.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 7,
        "review": False,
        "config": {
            "status": "rejected",
            "version": 8,
            "digest": DIGEST_V7,
            "errors": [
                {
                    "field": "uplink.host",
                    "reason": "not remotely settable: it can only be changed in the local "
                    "config file (certificates, broker address, file paths and "
                    "commands are never taken from the network)",
                }
            ],
            "more_errors": 0,
        },
    },
    {
        "id": "ID28",
        "seq": 28,
        "device": "cam-001",
        "camera": "system",
        "rule": "outbox-recovered",
        "phase": "start",
        "severity": "high",
        "ts": "2026-09-21T14:13:20.000Z",
        "label": "outbox",
        "score": 1.0,
        "bbox": [0.0, 0.0, 0.0, 0.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 0,
        "review": False,
        "moved_to": "/var/lib/edge-app/outbox.db.damaged-20260921T000000Z",
        "reason": "outbox database damaged at startup: database disk image is malformed",
        "salvaged": 120,
        "unreadable": 3,
        "loss_exact": True,
        "seq_lost": [[41, 43]],
        "seq_skipped": [121, 1120],
        "lane_rows_salvaged": 7,
        "lane_rows_unreadable": 0,
        "dead_letter_salvaged": 0,
        "damaged_pages": [12],
    },
    {
        "id": "ID29",
        "seq": 29,
        "device": "cam-001",
        "camera": "system",
        "rule": "outbox-recovered",
        "phase": "start",
        "severity": "high",
        "ts": "2026-09-21T14:13:20.000Z",
        "label": "outbox",
        "score": 1.0,
        "bbox": [0.0, 0.0, 0.0, 0.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 0,
        "review": False,
        "moved_to": "/x/outbox.db.damaged",
        "reason": "outbox database damaged at startup: file is not a database",
        "salvaged": 0,
        "unreadable": 0,
        "loss_exact": False,
        "seq_lost": [],
        "seq_skipped": None,
        "lane_rows_salvaged": 0,
        "lane_rows_unreadable": 0,
        "dead_letter_salvaged": 0,
        "damaged_pages": [],
        "salvage_error": "disk full",
    },
    {
        "id": "ID30",
        "seq": 30,
        "device": "cam-001",
        "camera": "dock",
        "rule": "health",
        "phase": "start",
        "severity": "high",
        "ts": "2026-09-21T14:13:20.000Z",
        "label": "camera_stale",
        "score": 1.0,
        "bbox": [0.0, 0.0, 0.0, 0.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 0,
        "review": False,
        "detail": "camera dock stale: no frame for 31 s",
    },
    {
        "id": "ID31",
        "seq": 31,
        "device": "cam-001",
        "camera": "dock",
        "rule": "health",
        "phase": "end",
        "severity": "high",
        "ts": "2026-09-21T14:13:32.340Z",
        "label": "camera_stale",
        "score": 1.0,
        "bbox": [0.0, 0.0, 0.0, 0.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 0,
        "review": False,
        "start_id": "ID30",
        "duration_s": 12.3,
        "end_reason": "cleared",
    },
    {
        "id": "ID33",
        "seq": 33,
        "device": "cam-001",
        "camera": "system",
        "rule": "health",
        "phase": "end",
        "severity": "medium",
        "ts": "2026-09-21T14:13:37.340Z",
        "label": "disk_low",
        "score": 1.0,
        "bbox": [0.0, 0.0, 0.0, 0.0],
        "zone": None,
        "track_id": None,
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "config_version": 0,
        "review": False,
        "start_id": "ID32",
        "duration_s": 5.0,
        "end_reason": "stopped",
    },
]
