"""R2: the real daemon (`edge-app run` on a looping clip) is killed with SIGKILL at random
moments, restarted each time, and finally stopped cleanly: every event it ever stored reaches
the cloud (audit: missing 0) and the outbox file passes ``PRAGMA integrity_check``.

Kills are spread over startup, capture, enqueue and delivery (random delays, seeded). The
default suite runs ``EDGE_APP_KILLS`` = 8 kills (about 30 s); set ``EDGE_APP_KILLS=50`` for the
issue's full run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from edge_app.clock import SystemClock
from edge_app.outbox import Outbox
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.cloud import Audit, CloudConsumer
from simulator.scene import SceneTruth
from tests.factories import wait_until

EDGE_APP = [sys.executable, "-m", "edge_app"]
KILLS = int(os.environ.get("EDGE_APP_KILLS", "8"))


def _config(tmp_path: Path, clip: Path, model: Path, broker: Mosquitto, pki: Pki) -> Path:
    config = {
        "device": {"thing_name": "crash-cam", "data_dir": str(tmp_path / "data")},
        "cameras": [
            {
                "name": "yard",
                "source": {
                    "type": "file",
                    "path": str(clip),
                    "realtime": True,
                    "speed": 8.0,
                    "loop": True,
                },
            }
        ],
        "detector": {"model": str(model)},
        "rules": [{"name": "person", "labels": ["person"], "min_frames": 2, "end_after_s": 0.5}],
        "uplink": {
            "host": broker.host,
            "port": broker.tls_port,
            "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)},
            "batch": {"max_wait_s": 0.05},
        },
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_r2_kill_9_at_random_moments_loses_nothing(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
) -> None:
    clip, _ = scene
    config = _config(tmp_path, clip, default_model, broker, pki)
    rng = random.Random(3)
    audit = Audit()
    command = [*EDGE_APP, "run", "--config", str(config)]
    with CloudConsumer(broker.host, broker.port, topic="edge-app/crash-cam/events", audit=audit):
        for _ in range(KILLS):
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(rng.uniform(0.5, 4.0))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
        seen = audit.report().last_seq
        last = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            # Stop it once it delivered (so it is up, its signal handlers set) and the cloud holds
            # enough events to prove something, not after a fixed time: a slow start (a loaded
            # machine, coverage in the child) outlasts any sleep.
            enough = max(seen, 3)
            assert wait_until(lambda: audit.report().last_seq > enough, 120.0), audit.report()
            last.send_signal(signal.SIGTERM)
            _, stderr = last.communicate(timeout=60)
        finally:
            if last.poll() is None:
                last.kill()
                last.wait()
        assert last.returncode == 0, stderr[-2000:]
        db = tmp_path / "data" / "outbox.db"
        with Outbox(
            db, clock=SystemClock(), device="crash-cam", max_bytes=1 << 30, max_age_s=1e9
        ) as outbox:
            stats = outbox.stats()
        assert stats.depth == 0  # the clean stop flushed everything
        assert stats.last_seq >= 4, "too few events to prove anything: check the clip/rules"
        assert audit.wait_for_seq(stats.last_seq, 30.0), audit.report()
    report = audit.report()
    assert report.missing == 0
    assert report.unique == report.last_seq == stats.last_seq
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
