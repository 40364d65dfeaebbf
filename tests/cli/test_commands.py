"""The commands a user runs, as subprocesses: `edge-app run|demo`, `simulator replay`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.clock import SystemClock
from edge_app.outbox import Outbox
from edge_app.uplink import encode_batch, stop_network_loop
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.cloud import Audit, CloudConsumer
from simulator.scene import SceneTruth

EDGE_APP = [sys.executable, "-m", "edge_app"]


class StatusWatcher:
    """Follows the retained status topic of a device."""

    def __init__(self, broker: Mosquitto, thing: str) -> None:
        self.states: list[str] = []
        self._changed = threading.Condition()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.subscribe(f"edge-app/{thing}/status", qos=1)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.states.append(json.loads(msg.payload)["state"])
            self._changed.notify_all()

    def wait_for(self, state: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: state in self.states, timeout)

    def close(self) -> None:
        self._client.disconnect()
        stop_network_loop(self._client)


def test_run_delivers_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
) -> None:
    clip, _ = scene
    config = {
        "device": {"thing_name": "run-cam", "data_dir": "data"},
        "cameras": [
            {
                "name": "yard",
                "source": {
                    "type": "file",
                    "path": str(clip),
                    "realtime": True,
                    "speed": 4.0,
                    "loop": True,
                },
            }
        ],
        "detector": {"model": str(default_model)},
        "rules": [{"name": "person", "labels": ["person"], "min_frames": 2, "end_after_s": 1.0}],
        "uplink": {
            "host": "127.0.0.1",
            "port": broker.tls_port,
            "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)},
            "batch": {"max_wait_s": 0.1},
        },
    }
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(config))
    audit = Audit()
    status = StatusWatcher(broker, "run-cam")
    with CloudConsumer(broker.host, broker.port, topic="edge-app/run-cam/events", audit=audit):
        proc = subprocess.Popen(
            [*EDGE_APP, "run", "--config", str(tmp_path / "edge.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert status.wait_for("online", timeout=30), status.states
            assert audit.wait_for_seq(2, timeout=30)  # a start and an end have arrived
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        assert status.wait_for("stopped", timeout=10), status.states
        status.close()
    report = audit.report()
    assert report.missing == 0
    assert report.unique == report.last_seq >= 2
    with Outbox(
        tmp_path / "data" / "outbox.db",
        clock=SystemClock(),
        device="run-cam",
        max_bytes=1 << 30,
        max_age_s=1e9,
    ) as outbox:
        assert outbox.stats().depth == 0  # flushed before exit
        assert outbox.lease(10, 1 << 20, encoder=encode_batch) is None
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(rec["msg"].startswith("edge-app started") for rec in lines)
    assert pki.client_key.read_text().splitlines()[1] not in stderr  # no key material logged


@pytest.mark.slow
def test_run_rejects_invalid_config_with_field_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: {thing_name: x}\ncameras: [{name: a, source: {type: file}}]\n")
    out = subprocess.run([*EDGE_APP, "run", "--config", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "cameras.0.source.file.path" in out.stderr


@pytest.mark.slow
def test_run_reports_missing_model_clearly(tmp_path: Path, scene: tuple[Path, SceneTruth]) -> None:
    clip, _ = scene
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "device": {"thing_name": "x", "data_dir": "data"},
                "cameras": [{"name": "a", "source": {"type": "file", "path": str(clip)}}],
                "detector": {"model": "ssd_mobilenet_v2_coco"},
                "uplink": {"enabled": False},
            }
        )
    )
    env = {**os.environ, "EDGE_APP_MODEL_DIR": str(tmp_path / "empty-cache")}
    out = subprocess.run(
        [*EDGE_APP, "run", "--config", str(cfg)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 2
    assert "edge-app models pull ssd_mobilenet_v2_coco" in out.stderr


@pytest.mark.slow
def test_run_refuses_to_start_an_exposed_endpoint_without_its_token(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "device": {"thing_name": "x", "data_dir": "data"},
                "cameras": [{"name": "a", "source": {"type": "usb"}}],
                "uplink": {"enabled": False},
                "health": {"host": "0.0.0.0", "token_file": "health.token"},
            }
        )
    )
    out = subprocess.run([*EDGE_APP, "run", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "health.token_file: cannot open the token file" in out.stderr
    assert f"chmod 600 {tmp_path / 'health.token'}" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was opened or created


@pytest.mark.broker  # the demo starts its own Mosquitto (no fixture says so)
def test_demo_json_summary(tmp_path: Path, default_model: Path) -> None:
    env = {**os.environ, "EDGE_APP_MODEL_DIR": str(default_model.parent)}
    out = subprocess.run(
        [*EDGE_APP, "demo", "--json", "--workdir", str(tmp_path), "--seconds", "10"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["events_raised"] == summary["events_delivered"] > 0
    assert summary["events_raised_offline"] == summary["events_raised"]
    assert summary["missing"] == 0
    assert summary["duplicates"] == 0
    assert summary["batches"] >= 2
    assert summary["start_events"] == summary["truth_visits"]


def test_replay_command(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    clip, truth = scene
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "device": {"thing_name": "replay", "data_dir": "data"},
                "cameras": [{"name": "x", "source": {"type": "usb"}}],
                "detector": {"model": str(default_model)},
                "rules": [{"name": "any", "labels": ["person", "cat", "motorcycle"]}],
                "uplink": {"enabled": False},
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "replay", str(clip), str(clip), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "replayed 2 file(s)" in out.stdout
    assert out.stdout.count(f"{truth.frames} frames") == 2
