"""No secret reaches any output: distinctive secrets in every config field that can hold one,
the real commands and the real daemon (as subprocesses, good and failing), and then every
place a secret could surface is read: stdout, stderr (the log), ``/status``, ``/metrics``,
``/healthz``, the files under ``data_dir`` (outbox, lanes, snapshots) and what reached the
real Mosquitto (mutual TLS).

Secrets: the test PKI's key and certificates pasted as PEM text into every path field; a camera
URL with user, password, query token, query password and fragment; CloudWatch and CloudWatch
Logs endpoint URLs with credentials; a model "path" that is a presigned URL; AWS credentials in
the environment; the key of encryption at rest (``edge-app keys generate``; the daemon runs
with ``encryption.enabled``), looked for as its base64 text, in hex and as raw bytes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki
from simulator.scene import SceneTruth
from tests.factories import wait_until
from tests.fakes import RecordingSubscriber

EDGE_APP = [sys.executable, "-m", "edge_app"]
THING = "sec-cam"


def _tag(kind: str) -> str:
    return f"{kind}{uuid.uuid4().hex[:10]}"


class Secrets:
    """The secret strings of one test, and where each is planted."""

    def __init__(self, pki: Pki) -> None:
        self.pems = {
            "key": pki.client_key.read_text(),
            "cert": pki.client_cert.read_text(),
            "ca": pki.ca.read_text(),
        }
        cam_port, cw_port, cwl_port = free_port(), free_port(), free_port()
        self.cam_user, self.cam_pw, self.cam_token = _tag("camu"), _tag("campw"), _tag("camtok")
        self.cam_qpw, self.cam_frag = _tag("camqpw"), _tag("camfrag")
        self.camera_url = (
            f"rtsp://{self.cam_user}:{self.cam_pw}@127.0.0.1:{cam_port}/live"
            f"?token={self.cam_token}&password={self.cam_qpw}#{self.cam_frag}"
        )
        self.cw_key, self.cw_token = _tag("cwkey"), _tag("cwtok")
        self.cw_url = (
            f"http://{self.cw_key}:{self.cw_token}@127.0.0.1:{cw_port}/"
            f"?X-Amz-Security-Token={self.cw_token}"
        )
        self.cwl_pw = _tag("cwlpw")
        self.cwl_url = f"http://logs:{self.cwl_pw}@127.0.0.1:{cwl_port}/?sig={self.cwl_pw}"
        self.model_sig = _tag("modelsig")
        self.model_url = f"https://models.example.com/m.tflite?X-Amz-Signature={self.model_sig}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "AKIA" + uuid.uuid4().hex[:16].upper(),
            "AWS_SECRET_ACCESS_KEY": _tag("awssecret"),
            "AWS_SESSION_TOKEN": _tag("awssession"),
            "AWS_MAX_ATTEMPTS": "1",  # fail fast against the closed endpoint ports
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.at_rest_key: bytes | None = None
        """The key of encryption at rest, once ``edge-app keys generate`` has made it."""

    def read_at_rest_key(self, key_file: Path) -> None:
        text = key_file.read_text().strip()
        self.at_rest_key = base64.b64decode(text, validate=True)

    def strings(self) -> dict[str, str]:
        """Every string that must never appear, by a name for the failure message."""
        found = {
            "camera user": self.cam_user,
            "camera password": self.cam_pw,
            "camera token": self.cam_token,
            "camera query password": self.cam_qpw,
            "camera fragment": self.cam_frag,
            "cloudwatch key": self.cw_key,
            "cloudwatch token": self.cw_token,
            "logs password": self.cwl_pw,
            "model signature": self.model_sig,
            "aws key id": self.env["AWS_ACCESS_KEY_ID"],
            "aws secret": self.env["AWS_SECRET_ACCESS_KEY"],
            "aws session": self.env["AWS_SESSION_TOKEN"],
        }
        for name, pem in self.pems.items():
            body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
            found |= {f"{name} PEM line {i}": line for i, line in enumerate(body) if len(line) > 16}
        if self.at_rest_key is not None:
            encoded = base64.b64encode(self.at_rest_key).decode()
            found |= {
                "at-rest key (base64)": encoded.rstrip("="),
                "at-rest key (hex)": self.at_rest_key.hex(),
            }
        return found

    def check(self, where: str, data: str | bytes) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        leaked = [name for name, secret in self.strings().items() if secret in text]
        key = self.at_rest_key
        if key is not None and (key in data if isinstance(data, bytes) else key.hex() in text):
            leaked.append("at-rest key (raw)")
        assert not leaked, f"{where} shows {leaked}"


@pytest.fixture
def secrets(pki: Pki) -> Secrets:
    return Secrets(pki)


def command(secrets: Secrets, *args: str, rc: int) -> subprocess.CompletedProcess[str]:
    """Run ``edge-app ARGS`` to completion, check its exit code and that its output is clean."""
    env = {**os.environ, **secrets.env}
    out = subprocess.run([*EDGE_APP, *args], capture_output=True, text=True, env=env, timeout=120)
    where = f"edge-app {args[:2]}"
    assert out.returncode == rc, f"{where}: exit {out.returncode}\n{out.stderr[-2000:]}"
    secrets.check(f"{where} stdout", out.stdout)
    secrets.check(f"{where} stderr", out.stderr)
    return out


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_pem_text_in_every_path_field_is_refused_without_showing_it(
    tmp_path: Path, secrets: Secrets, scene: tuple[Path, SceneTruth]
) -> None:
    key, cert, ca = secrets.pems["key"], secrets.pems["cert"], secrets.pems["ca"]
    config = write(
        tmp_path / "pasted.yaml",
        {
            "device": {"thing_name": THING, "data_dir": key},
            "cameras": [
                {"name": "gate", "source": {"type": "url", "url": secrets.camera_url}},
                {"name": "yard", "source": {"type": "file", "path": cert}},
                {"name": "stills", "source": {"type": "images", "path": ca}},
            ],
            "detector": {"model": key, "labels": cert, "model_dir": ca},
            "outbox": {"path": key},
            "uplink": {"tls": {"ca": ca, "cert": cert, "key": key}},
            "metrics": {"sink": "file", "file": key, "endpoint_url": secrets.cw_url},
            "cloudwatch_logs": {"enabled": True, "endpoint_url": secrets.cwl_url},
            "encryption": {"key_file": key},
        },
    )
    validate = command(secrets, "config", "validate", str(config), rc=1)
    for field in (
        "device.data_dir",
        "cameras.1.source.file.path",
        "cameras.2.source.images.path",
        "detector.model",
        "detector.labels",
        "detector.model_dir",
        "outbox.path",
        "uplink.tls.ca",
        "uplink.tls.cert",
        "uplink.tls.key",
        "metrics.file",
        "encryption.key_file",
    ):
        assert f"{field}: holds PEM text" in validate.stderr, field
    assert validate.stderr.count("give that file's path") == 12
    command(secrets, "config", "show", str(config), rc=1)
    command(secrets, "config", "show", str(config), "--json", rc=1)
    run = command(secrets, "run", "--config", str(config), rc=1)
    assert "uplink.tls.key" in run.stderr
    command(secrets, "outbox", "--config", str(config), "status", rc=2)
    clip, _ = scene
    detect = command(secrets, "detect", str(clip), "--labels", key, "--model", cert, rc=2)
    assert "labels: holds PEM text" in detect.stderr
    assert "model: holds PEM text" in detect.stderr


@pytest.mark.slow
def test_a_failing_start_shows_no_secret(
    tmp_path: Path, secrets: Secrets, scene: tuple[Path, SceneTruth]
) -> None:
    clip, _ = scene
    config = write(
        tmp_path / "edge.yaml",
        {
            "device": {"thing_name": THING, "data_dir": "data"},
            "cameras": [
                {"name": "gate", "source": {"type": "url", "url": secrets.camera_url}},
                {"name": "yard", "source": {"type": "file", "path": str(clip)}},
            ],
            "detector": {"model": secrets.model_url},
            "uplink": {"enabled": False},
        },
    )
    run = command(secrets, "run", "--config", str(config), rc=2)
    assert "edge-app: " in run.stderr
    assert "https:/models.example.com/m.tflite?X-Amz-Signature=***" in run.stderr
    detect = command(secrets, "detect", str(clip), "--model", secrets.model_url, rc=2)
    assert "X-Amz-Signature=***" in detect.stderr


class Daemon:
    """``edge-app run`` as a subprocess, its stdout and stderr in files (the log files)."""

    def __init__(self, config: Path, secrets: Secrets, health_port: int) -> None:
        self.out = config.with_suffix(f".{health_port}.out")
        self.err = config.with_suffix(f".{health_port}.err")
        self.port = health_port
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [*EDGE_APP, "run", "--config", str(config)],
                stdout=out,
                stderr=err,
                env={**os.environ, **secrets.env},
            )

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), str(response.read().decode())
        except urllib.error.HTTPError as exc:
            return int(exc.code), str(exc.read().decode())
        except OSError:
            return 0, ""

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        return dict(json.loads(body)) if code == 200 else {}

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def subscriber(broker: Mosquitto) -> Iterator[RecordingSubscriber]:
    """Everything the device publishes on the real broker."""
    with RecordingSubscriber(broker.host, broker.port, f"edge-app/{THING}/#") as sub:
        yield sub


def running_config(
    tmp_path: Path,
    secrets: Secrets,
    pki: Pki,
    clip: Path,
    model: Path,
    mqtt_port: int,
    key_file: Path,
) -> tuple[Path, int]:
    """The daemon's config (encryption at rest on, with ``key_file``) and its health port."""
    health_port = free_port()
    doc = write(
        tmp_path / "edge.yaml",
        {
            "device": {"thing_name": THING, "data_dir": "data", "site": "dock"},
            "cameras": [
                # a bad source: nothing listens there, the capture thread keeps retrying
                {"name": "gate", "source": {"type": "url", "url": secrets.camera_url}},
                {
                    "name": "yard",
                    "source": {
                        "type": "file",
                        "path": str(clip),
                        "realtime": True,
                        "speed": 4.0,
                        "loop": True,
                    },
                },
            ],
            "detector": {"model": str(model)},
            "rules": [{"name": "person", "labels": ["person"], "min_frames": 2}],
            "uplink": {
                "host": "127.0.0.1",
                "port": mqtt_port,
                "tls": {
                    "ca": str(pki.ca),
                    "cert": str(pki.client_cert),
                    "key": str(pki.client_key),
                },
                "batch": {"max_wait_s": 0.1},
                "reconnect": {"min_s": 0.1, "max_s": 0.5},
                "flush_timeout_s": 0.5,
            },
            "metrics": {
                "sink": "cloudwatch",
                "endpoint_url": secrets.cw_url,
                "sample_s": 0.2,
                "period_s": 1.0,
            },
            "cloudwatch_logs": {"enabled": True, "endpoint_url": secrets.cwl_url},
            "health": {"port": health_port},
            "encryption": {"enabled": True, "key_file": str(key_file)},
        },
    )
    return doc, health_port


def check_endpoints(daemon: Daemon, secrets: Secrets) -> dict[str, Any]:
    # The collector's first sample of the camera comes a moment after the endpoint is up.
    assert wait_until(lambda: 'camera="gate"' in daemon.get("/metrics")[1])
    bodies = {path: daemon.get(path) for path in ("/status", "/metrics", "/healthz")}
    for path, (code, body) in bodies.items():
        assert code in {200, 503}, (path, code)
        secrets.check(path, body)
    assert 'camera="gate"' in bodies["/metrics"][1]
    return dict(json.loads(bodies["/status"][1]))


def test_the_daemon_and_the_commands_show_no_secret(
    tmp_path: Path,
    secrets: Secrets,
    pki: Pki,
    broker: Mosquitto,
    subscriber: RecordingSubscriber,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
) -> None:
    clip, _ = scene
    key_file = tmp_path / "at-rest.key"
    command(secrets, "keys", "generate", str(key_file), rc=0)
    secrets.read_at_rest_key(key_file)  # from here on, command() also looks for the key
    command(secrets, "keys", "check", str(key_file), rc=0)
    command(secrets, "keys", "generate", str(key_file), rc=2)  # never overwrites
    config, health_port = running_config(
        tmp_path, secrets, pki, clip, default_model, free_port(), key_file
    )
    shown = command(secrets, "config", "show", str(config), rc=0)
    assert "url: rtsp://***@127.0.0.1:" in shown.stdout  # which camera is still clear
    assert "/live?token=***&password=***#***" in shown.stdout
    command(secrets, "config", "validate", str(config), rc=0)

    # 1. broker down, a camera that cannot be opened, CloudWatch endpoints that refuse
    daemon = Daemon(config, secrets, health_port)
    try:
        assert wait_until(lambda: "camera gate: cannot open rtsp://***@" in daemon.log()), (
            daemon.log()[-3000:]
        )
        assert wait_until(lambda: "metrics sink failed" in daemon.log()), daemon.log()[-3000:]
        assert wait_until(lambda: daemon.status().get("outbox_depth", 0) >= 2, timeout=60)
        status = check_endpoints(daemon, secrets)
        assert status["uplink_connected"] is False
        assert set(status["cameras"]) == {"gate", "yard"}
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]
    assert "Could not connect to the endpoint URL" in daemon.log()
    secrets.check("run stdout (broker down)", daemon.out.read_text())
    secrets.check("run log (broker down)", daemon.log())

    status_out = command(secrets, "outbox", "--config", str(config), "status", rc=0)
    assert "depth" in status_out.stdout
    command(secrets, "outbox", "--config", str(config), "status", "--json", rc=0)
    peek = command(secrets, "outbox", "--config", str(config), "peek", "1000", rc=0)
    stored = [json.loads(line) for line in peek.stdout.splitlines()]
    assert len(stored) >= 2
    assert {event["camera"] for event in stored} == {"yard"}
    export = tmp_path / "export.jsonl"
    command(secrets, "outbox", "--config", str(config), "export", str(export), rc=0)
    secrets.check("outbox export", export.read_text())
    db = str(tmp_path / "data" / "outbox.db")
    keyless = command(secrets, "outbox", "--db", db, "peek", rc=2)
    assert "encrypted event(s)" in keyless.stderr
    assert keyless.stdout == ""
    keyed = command(secrets, "outbox", "--db", db, "peek", "1000", "--key", str(key_file), rc=0)
    assert keyed.stdout == peek.stdout  # the read-only view decrypts, --key or --config
    assert list((tmp_path / "data").rglob("*.jpg.enc"))
    assert list((tmp_path / "data").rglob("*.jpg")) == []  # snapshots stored encrypted only
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            secrets.check(f"data file {path.name}", path.read_bytes())

    # 2. broker up: the stored events and the new ones go out over mutual TLS
    config, health_port = running_config(
        tmp_path, secrets, pki, clip, default_model, broker.tls_port, key_file
    )
    daemon = Daemon(config, secrets, health_port)
    try:
        assert wait_until(lambda: daemon.status().get("uplink_connected") is True, timeout=60)
        assert wait_until(lambda: f"edge-app/{THING}/events" in subscriber.topics())
        assert wait_until(lambda: daemon.status().get("batches_sent", 0) >= 1)
        check_endpoints(daemon, secrets)
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]
    secrets.check("run stdout (broker up)", daemon.out.read_text())
    secrets.check("run log (broker up)", daemon.log())
    for topic, payload, _, _ in subscriber.messages():
        secrets.check(f"MQTT {topic}", payload)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            secrets.check(f"data file {path.name}", path.read_bytes())
