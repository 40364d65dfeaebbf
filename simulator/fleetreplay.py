"""A fleet device that runs the whole daemon on a clip: ``python -m simulator fleet --replay``.

``ReplayDevice`` is a fleet device (``DeviceBase``, as ``SimDevice``) whose events come from
the real pipeline instead of a generator: an ``EdgeApp`` (the composition root ``edge-app
run`` uses) with one camera replaying the clip at its own fps (``realtime``, so outage times
mean seconds of video), the given detector model (the default: SSD MobileNet v2), rules for
people, vehicles and animals, its own outbox and its uplink over mutual TLS to the fleet's
broker, through its own proxy when it has outages. It costs a detector per device (one
inference thread each): a few devices on this machine, not fifty.

Its events are counted by ``seq`` (1..the outbox's last seq: every event the daemon stored,
health events included), not by id: the daemon's ids are not visible from outside it, and its
seqs have no gaps by contract (docs/events.md).

For a rollout (``simulator.fleetrollout``) a device is built with ``loop=True`` (the clip starts
over, so the updater has recent frames and a health watch however long the rollout takes) and
``model_updates`` (its local ``model_updates`` section: the file server's URL prefix); the
rollout then ends the capture itself (``end_capture``). Its registry (``detector.model_dir``)
is its own, under ``data_dir``, so devices never share a downloaded model.
"""

from __future__ import annotations

__all__ = ["ReplayDevice", "clip_seconds"]

from pathlib import Path
from typing import Any

import cv2

from edge_app.app import EdgeApp
from edge_app.builder.uplink import mqtt_transport
from edge_app.config import TlsConfig, parse_config
from simulator.fleetdevice import DeviceBase
from simulator.fleetledger import DeviceTally, Ledger
from simulator.fleetplan import OutageSpec

RULES = [
    {"name": "person", "labels": ["person"], "min_score": 0.5, "severity": "high"},
    {"name": "vehicle", "labels": ["motorcycle", "bicycle", "car"], "min_score": 0.5},
    {"name": "animal", "labels": ["cat", "dog"], "min_score": 0.5, "severity": "low"},
]


class ReplayDevice(DeviceBase):
    """Device ``thing`` running ``EdgeApp`` on ``clip`` with ``model``, delivering to
    ``host:port`` over ``tls``; the same life cycle as ``SimDevice`` (``connect``, ``run``,
    ``halt``, ``stop``). Its data (outbox, snapshots) live in ``data_dir``."""

    def __init__(
        self,
        thing: str,
        *,
        host: str,
        port: int,
        tls: TlsConfig,
        data_dir: Path,
        clip: Path,
        model: Path,
        outages: tuple[OutageSpec, ...] = (),
        loop: bool = False,
        model_updates: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(thing, host, port, outages)
        host, port = self.link
        self.behind_s = 0.0  # paced by the clip: there is no schedule to fall behind
        self.failed: str | None = None  # the daemon reports its own failures as health events
        data_dir.mkdir(parents=True, exist_ok=True)
        raw = _config(
            thing, host=host, port=port, tls=tls, data_dir=data_dir, clip=clip, model=model
        )
        raw["cameras"][0]["source"]["loop"] = loop
        if model_updates is not None:
            raw["model_updates"] = model_updates
        (data_dir / "models").mkdir(exist_ok=True)
        config = parse_config(raw)
        self.config = config
        # The daemon's own transport, built by its builder's function, handed in so the fleet
        # can read it.
        self.transport = mqtt_transport(config)
        self.app = EdgeApp(config, transport=self.transport)
        self._started = False
        self._last_seq = 0

    @property
    def done_raising(self) -> bool:
        """True once the clip has played to its end."""
        return self._started and self.app.wait(0)

    def connect(self) -> None:
        """Start the daemon: it connects and starts on the clip at once (it has no separate
        connect step); the outage script still waits for the run's start."""
        self._open_link()
        self.app.start()
        self._started = True
        self._start_components()

    def run(self, t0: float) -> None:
        """Start the outage script, timed from ``t0`` (the clip already plays)."""
        self._run_outages(t0)

    def end_capture(self) -> None:
        """Stop taking frames (a looping clip ends here); delivery goes on until ``stop``."""
        self.app.request_stop()

    def lost_frames(self) -> int:
        """Frames the camera read but neither processed nor skipped on purpose (fps limit,
        motion gate): dropped late or lost in a model switch. Exact once the capture ended."""
        return sum(c.lost for c in self.app.camera_stats().values())

    def halt(self) -> None:
        super().halt()
        self.app.request_stop()

    def stop(self) -> None:
        self._wind_down()
        self.last_seq()  # the outbox closes with the app
        self._started = False
        self.app.stop(flush_timeout_s=0.0)
        self._close_proxy()

    def last_seq(self) -> int:
        """The last seq the daemon stored (while running; after ``stop``, the one it had)."""
        if self._started:
            self._last_seq = self.app.stats().last_seq
        return self._last_seq

    def holds_all(self, ledger: Ledger) -> bool:
        """True once the clip ended and every seq the daemon stored has arrived."""
        return self.done_raising and ledger.holds_seqs(self.thing, self.last_seq())

    def settled(self) -> bool:
        """True when the daemon's outbox holds nothing (every event acknowledged)."""
        return not self._started or self.app.stats().outbox_depth == 0

    def tally(self, ledger: Ledger) -> DeviceTally:
        return ledger.tally_seqs(
            self.thing, self.last_seq(), outages=tuple(o.text for o in self.outages)
        )


def clip_seconds(clip: Path) -> float:
    """How long ``clip`` plays, seconds (frames / fps; 0 when OpenCV cannot tell)."""
    capture = cv2.VideoCapture(str(clip))
    try:
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(frames / fps) if fps > 0 else 0.0


def _config(
    thing: str, *, host: str, port: int, tls: TlsConfig, data_dir: Path, clip: Path, model: Path
) -> dict[str, Any]:
    return {
        "device": {"thing_name": thing, "site": "fleet", "data_dir": str(data_dir)},
        "cameras": [
            {"name": "yard", "source": {"type": "file", "path": str(clip), "realtime": True}}
        ],
        "detector": {
            "model": str(model),
            "model_dir": str(data_dir / "models"),  # its own registry
            "threads": 1,
            "score_threshold": 0.4,
        },
        "rules": [{**r, "min_frames": 3, "end_after_s": 1.0} for r in RULES],
        "uplink": {
            "host": host,
            "port": port,
            "tls": {"ca": str(tls.ca), "cert": str(tls.cert), "key": str(tls.key)},
            "reconnect": {"min_s": 0.2, "max_s": 1.0},
        },
        "health": {"port": 0},  # any free port: several daemons run in this process
        "log_level": "error",
    }
