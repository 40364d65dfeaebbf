"""The compose trial (deploy/docker/compose.yaml): its structure (``docker compose config``
needs the engine, which does not run here), and its broker config, PKI script and device
config run for real without Docker: a real Mosquitto with the trial's mosquitto.conf, the
certificates trial/pki.sh lays out, the daemon with the trial's config, the cloud audit."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_app.config import load_config
from simulator.broker import BrokerError, find_mosquitto, free_port
from simulator.cloud import Audit, CloudConsumer
from tests.deploy.conftest import DEPLOY, Install
from tests.deploy.test_docker import STATE_IN_IMAGE, final
from tests.factories import wait_until

DOCKER = DEPLOY / "docker"
TRIAL = DOCKER / "trial"
EDGE_APP_UID = 10001


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """container path -> (source, read-only) of a service's short-syntax volumes."""
    out = {}
    for entry in service.get("volumes", []):
        source, target, *mode = entry.split(":")
        out[target] = (source, mode == ["ro"])
    return out


def test_the_trial_runs_the_image_beside_a_mutual_tls_broker() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"pki", "scene", "mosquitto", "cloud", "edge-app"}
    app = services["edge-app"]
    assert app["build"] == {
        "context": "../..",
        "dockerfile": "deploy/docker/Dockerfile",
        "args": {"EXTRAS": "encryption,sim"},
    }
    assert (DOCKER / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    # the image's own command and HEALTHCHECK: no entrypoint or command override
    assert "entrypoint" not in app
    assert "command" not in app
    assert "healthcheck" not in app
    assert "user" not in app  # the image's non-root user
    assert app["read_only"] is True
    assert app["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in app["security_opt"]
    assert not any(s.get("privileged") for s in services.values())
    assert app["depends_on"]["scene"] == {"condition": "service_completed_successfully"}
    assert services["mosquitto"]["depends_on"]["pki"] == {
        "condition": "service_completed_successfully"
    }
    assert set(doc["volumes"]) == {"pki", "clips", "state"}


def test_config_and_certificates_are_read_only_and_state_is_the_image_volume() -> None:
    services = compose()["services"]
    app = mounts(services["edge-app"])
    assert app["/etc/edge-app/config.yaml"] == ("./trial/config.yaml", True)
    assert app["/etc/edge-app/pki"] == ("pki", True)
    assert app["/clips"] == ("clips", True)
    assert app[STATE_IN_IMAGE] == ("state", False)
    assert final("VOLUME") == [f'["{STATE_IN_IMAGE}"]']
    broker = mounts(services["mosquitto"])
    assert broker["/mosquitto/config/mosquitto.conf"] == ("./trial/mosquitto.conf", True)
    assert broker["/pki"] == ("pki", True)
    for service in services.values():
        for source, _ in mounts(service).values():
            if source.startswith("."):
                assert (DOCKER / source).exists(), source  # a host path of the repository


def test_the_trial_files_fit_together() -> None:
    config = load_config(TRIAL / "config.yaml")
    assert config.device.data_dir == Path(STATE_IN_IMAGE)
    assert config.uplink.host == "mosquitto"
    tls = config.uplink.tls
    assert tls is not None
    assert (tls.ca, tls.cert, tls.key) == tuple(
        Path("/etc/edge-app/pki/device") / name for name in ("ca.crt", "client.crt", "client.key")
    )
    source = config.cameras[0].source
    scene = compose()["services"]["scene"]["command"]
    assert getattr(source, "path", None) == Path(scene[scene.index("--out") + 1])
    conf = (TRIAL / "mosquitto.conf").read_text().splitlines()
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        "listener 8883",
    ):
        assert line in conf
    cloud = compose()["services"]["cloud"]["command"]
    assert cloud[cloud.index("--port") + 1] == "8883"
    assert cloud[cloud.index("--host") + 1] == "mosquitto"


def _broker_uid() -> int:
    try:
        return pwd.getpwnam("mosquitto").pw_uid  # mosquitto drops to it when started as root
    except KeyError:
        return os.getuid()


@pytest.mark.broker
def test_the_trial_broker_pki_and_config_deliver_events_over_mutual_tls(
    tmp_path: Path, clip: Path, image_install: Install, request: pytest.FixtureRequest
) -> None:
    if os.geteuid() != 0:
        pytest.skip("pki.sh hands files to other uids (it runs as root in the trial)")
    try:
        mosquitto = find_mosquitto()
    except BrokerError as exc:
        pytest.skip(str(exc))
    # the broker's user must reach its files: not through pytest's 0700 base folder
    shared = Path(tempfile.mkdtemp(prefix="edge-app-trial-"))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o755)
    pki = shared / "pki"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "BROKER_UID": str(_broker_uid()),
    }
    made = subprocess.run(
        ["sh", str(TRIAL / "pki.sh"), str(pki)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    for folder, uid in (
        ("broker", _broker_uid()),
        ("device", EDGE_APP_UID),
        ("cloud", EDGE_APP_UID),
    ):
        info = (pki / folder).stat()
        assert (info.st_uid, oct(info.st_mode & 0o777)) == (uid, "0o700"), folder
        key = next((pki / folder).glob("*.key"))
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct((pki / ".all").stat().st_mode & 0o777) == "0o700"  # the CA key

    port = free_port()
    conf = (TRIAL / "mosquitto.conf").read_text()
    conf = conf.replace("/pki/", f"{pki}/").replace("listener 8883", f"listener {port} 127.0.0.1")
    (tmp_path / "mosquitto.conf").write_text(conf)
    os.chmod(tmp_path, 0o755)  # the broker's user reaches its files through here
    with (tmp_path / "mosquitto.log").open("wb") as log:  # the child keeps its own copy
        broker = subprocess.Popen(
            [mosquitto, "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=log
        )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    doc = yaml.safe_load((TRIAL / "config.yaml").read_text())
    doc["device"]["data_dir"] = str(tmp_path / "state")
    doc["cameras"][0]["source"] = {
        "type": "file",
        "path": str(clip),
        "realtime": True,
        "speed": 2.0,
        "loop": True,
    }
    doc["uplink"]["host"] = "localhost"  # "mosquitto" in compose; both in the certificate
    doc["uplink"]["port"] = port
    doc["uplink"]["tls"] = {
        k: v.replace("/etc/edge-app/pki/", f"{pki}/") for k, v in doc["uplink"]["tls"].items()
    }
    doc["uplink"]["batch"] = {"max_wait_s": 0.1}
    doc["health"]["port"] = free_port()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    audit = Audit()
    devices: set[str] = set()
    cloud = pki / "cloud"
    daemon = None
    try:
        assert wait_until(listening, timeout=30), (tmp_path / "mosquitto.log").read_text()
        consumer = CloudConsumer(
            "127.0.0.1",
            port,
            audit=audit,
            tls=(cloud / "ca.crt", cloud / "client.crt", cloud / "client.key"),
        )
        consumer.on_batch = lambda batch: devices.add(batch["device"])
        with consumer:
            daemon = subprocess.Popen(
                [
                    str(image_install.bin / "edge-app"),
                    "run",
                    "--config",
                    str(tmp_path / "config.yaml"),
                ],
                env=image_install.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert audit.wait_for_seq(2, timeout=120), daemon.poll()
            daemon.terminate()
            _, stderr = daemon.communicate(timeout=60)
            assert daemon.returncode == 0, stderr[-2000:]
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        broker.terminate()
        broker.wait(timeout=30)
    report = audit.report()
    assert report.missing == 0
    assert report.unique == report.last_seq >= 2
    assert devices == {"cam-001"}  # the thing name of the trial's certificate
