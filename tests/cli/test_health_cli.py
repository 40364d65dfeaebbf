"""``edge-app health``: the daemon's /healthz as an exit code (the Docker HEALTHCHECK), over
real sockets against the real ``HealthServer``; health is driven by a ``FakeClock``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_app.cli import main
from edge_app.clock import FakeClock
from edge_app.telemetry import BearerToken, HealthMonitor, HealthServer, Registry
from simulator.broker import free_port

TOKEN = "p8Hq2-Wm4tXs7_cKd1aZe5NvB3uYgJfR"


@dataclass(frozen=True)
class Camera:
    processed: int
    detecting: bool


@contextmanager
def daemon_endpoint(
    clock: FakeClock, cameras: dict[str, Camera], token: BearerToken | None = None
) -> Iterator[HealthServer]:
    health = HealthMonitor(
        clock=clock,
        cameras=lambda: cameras,
        outbox=lambda: None,
        outbox_max_bytes=0,
        connected=None,
        disk_path=Path("/"),
        disk_usage=lambda _: (100, 50, 50),
    )
    server = HealthServer(
        "127.0.0.1",
        0,
        registry=Registry({"device": "probe-cam"}),
        health=health,
        status=dict,
        token=token,
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


def write_config(tmp_path: Path, at_port: int, **health: Any) -> Path:
    doc = {
        "device": {"thing_name": "probe-cam"},
        "cameras": [{"name": "a", "source": {"type": "file", "path": "a.mp4"}}],
        "uplink": {"enabled": False},
        "health": {"host": "127.0.0.1", "port": at_port, **health},
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_ok_and_degraded_exit_0_failing_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    cameras = {"dock": Camera(processed=5, detecting=False)}
    with daemon_endpoint(clock, cameras) as server:
        config = str(write_config(tmp_path, server.port))
        assert main(["health", "--config", config]) == 0
        assert capsys.readouterr().out.strip() == "ok"
        clock.advance(31)  # no frame processed for longer than camera_stale_s
        assert main(["health", "--config", config]) == 0
        assert capsys.readouterr().out.startswith("degraded: camera dock stale")
        cameras["dock"] = Camera(processed=6, detecting=True)
        assert main(["health", "--config", config]) == 0  # progress again: ok
        capsys.readouterr()
        clock.advance(31)  # inside detect without progress: failing, HTTP 503
        assert main(["health", "--config", config, "--json"]) == 1
        out = capsys.readouterr().out
        assert '"state": "failing"' in out
        assert "detector stuck on camera dock" in out


def test_the_configured_token_is_sent_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "health.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    clock = FakeClock()
    with daemon_endpoint(clock, {"dock": Camera(1, False)}, BearerToken(TOKEN)) as server:
        config = write_config(tmp_path, server.port, token_file=str(token_file))
        assert main(["health", "--config", str(config)]) == 0
        assert capsys.readouterr().out.strip() == "ok"
        other = tmp_path / "other.token"
        other.write_text("Z" * 32)
        other.chmod(0o600)
        config = write_config(tmp_path, server.port, token_file=str(other))
        assert main(["health", "--config", str(config)]) == 1
        captured = capsys.readouterr()
        assert "refused the token (401)" in captured.err
        assert TOKEN not in captured.out + captured.err
        assert "Z" * 32 not in captured.out + captured.err


def test_no_daemon_is_unhealthy_with_a_clear_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, free_port())
    assert main(["health", "--config", str(config), "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "no answer from http://127.0.0.1:" in err
    assert "is edge-app running" in err


@pytest.mark.parametrize(
    ("health", "why"),
    [
        ({"enabled": False}, "health.enabled is false"),
        ({"port": 0}, "health.port is 0"),
    ],
)
def test_a_config_the_probe_cannot_use_is_unhealthy_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], health: dict[str, Any], why: str
) -> None:
    config = write_config(tmp_path, 8321, **health)
    assert main(["health", "--config", str(config)]) == 1
    assert why in capsys.readouterr().err


def test_an_unreadable_config_is_exit_1_not_docker_s_reserved_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["health", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read file" in capsys.readouterr().err


def test_a_server_bound_to_every_address_is_asked_on_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # health.host 0.0.0.0 (a container publishing the port) needs a token; the probe runs
    # beside the daemon and asks 127.0.0.1
    token_file = tmp_path / "health.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    with daemon_endpoint(FakeClock(), {"dock": Camera(1, False)}, BearerToken(TOKEN)) as server:
        config = write_config(tmp_path, server.port, token_file=str(token_file))
        doc = yaml.safe_load(config.read_text())
        doc["health"]["host"] = "0.0.0.0"
        config.write_text(yaml.safe_dump(doc))
        assert main(["health", "--config", str(config)]) == 0
        assert capsys.readouterr().out.strip() == "ok"
