"""A start that fails at any step leaves nothing behind: every thread the app started has
ended, every socket and file it opened is closed (the outbox too: its WAL is checkpointed away
and it opens again). Real parts: the default model, a real clip, Mosquitto over mutual TLS,
the health endpoint, clips, the snapshot and metrics lanes. Each step of ``START_STEPS`` fails
in turn through the app's ``on_start_step`` hook; real faults (a bad telemetry setting after
the uplink is set up, a missing second source, a missing model) fail where they occur."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_app.app import START_STEPS, EdgeApp
from edge_app.clock import SystemClock
from edge_app.config import AppConfig, parse_config
from edge_app.errors import EdgeAppError, ModelNotFoundError, SourceError, TelemetryError
from edge_app.outbox import Outbox
from edge_app.telemetry import aws_client
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.scene import SceneTruth
from tests.app.test_app import app_config, tls

pytestmark = pytest.mark.broker


class InjectedError(Exception):
    """The failure a test injects at one start step."""


class FailingApp(EdgeApp):
    """EdgeApp whose start fails at ``fail_at`` (and records the steps it went through)."""

    def __init__(self, config: AppConfig, fail_at: str) -> None:
        super().__init__(config)
        self.fail_at = fail_at
        self.steps: list[str] = []

    def on_start_step(self, step: str) -> None:
        self.steps.append(step)
        if step == self.fail_at:
            raise InjectedError(step)


def full_config(
    tmp: Path, clip: Path, model: Path, broker: Mosquitto, pki: Pki, **extra: Any
) -> AppConfig:
    """Every part that holds a thread, a socket or a file: MQTT over mutual TLS, health HTTP
    on a free port, clips (the writer thread), the snapshot lane and the MQTT metrics lane."""
    base = app_config(
        tmp, clip, model, host="127.0.0.1", port=broker.tls_port, tls=tls(pki)
    ).model_dump(mode="json", exclude_none=True)
    base["cameras"][0]["clips"] = {"pre_s": 1.0, "post_s": 1.0, "fps": 5, "width": 320}
    base["health"] = {"port": 0}
    base["metrics"] = {"enabled": True, "sink": "mqtt"}
    return parse_config({**base, **extra})


def open_files() -> dict[str, str]:
    """This process's open file descriptors and what each refers to."""
    fds: dict[str, str] = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the descriptor listdir itself used
            continue
    return fds


class Leaks:
    """What is running and open now, to compare with after a failed start."""

    def __init__(self) -> None:
        self.threads = set(threading.enumerate())
        self.files = open_files()

    def threads_left(self) -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t not in self.threads)

    def files_left(self) -> dict[str, str]:
        now = open_files()
        return {fd: what for fd, what in now.items() if self.files.get(fd) != what}


def assert_outbox_closed(config: AppConfig, files: dict[str, str]) -> None:
    data = str(config.device.data_dir)
    assert not [what for what in files.values() if what.startswith(data)]
    db = config.outbox_path
    # the last connection to close checkpoints the WAL and deletes it
    assert not db.with_name(db.name + "-wal").exists()
    if db.exists():
        with Outbox(db, clock=SystemClock(), device="x", max_bytes=1 << 30, max_age_s=1e9) as box:
            box.stats()


@pytest.fixture(scope="module")
def warmed(
    tmp_path_factory: pytest.TempPathFactory,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
) -> None:
    """One whole start and stop first, so that what a library opens once per process (and
    keeps) is open before the failed starts are measured; and one boto3 client (the first one
    a process makes keeps a connection to the EC2 metadata address, 169.254.169.254)."""
    aws_client("cloudwatch", region="us-east-1")
    clip, _ = scene
    config = full_config(tmp_path_factory.mktemp("warm"), clip, default_model, broker, pki)
    with EdgeApp(config) as app:
        app.wait()


@pytest.mark.usefixtures("warmed")
@pytest.mark.parametrize("step", START_STEPS)
def test_a_start_failing_at_any_step_stops_and_closes_what_it_started(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    step: str,
) -> None:
    clip, _ = scene
    config = full_config(tmp_path, clip, default_model, broker, pki)
    before = Leaks()
    app = FailingApp(config, step)
    with pytest.raises(InjectedError):
        app.start()
    assert app.steps == list(START_STEPS[: START_STEPS.index(step) + 1])
    assert before.threads_left() == []
    assert before.files_left() == {}
    assert_outbox_closed(config, open_files())
    app.stop()  # nothing to stop: a failed start is not running
    assert app.telemetry is None
    # and the same data directory starts cleanly afterwards
    with EdgeApp(config) as again:
        assert again.wait(timeout=60)
        assert again.stats().frames > 0
    assert before.threads_left() == []


def with_second_camera(config: AppConfig, path: Path) -> AppConfig:
    doc = config.model_dump(mode="json", exclude_none=True)
    second = {**doc["cameras"][0], "name": "gate", "source": {"type": "file", "path": str(path)}}
    second.pop("clips", None)
    doc["cameras"].append(second)
    return parse_config(doc)


@pytest.mark.usefixtures("warmed")
@pytest.mark.parametrize("fault", ["telemetry", "second source", "model"])
def test_a_real_fault_during_start_leaves_no_thread_and_no_open_file(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    fault: str,
) -> None:
    """The telemetry fault comes after the uplink is set up (it used to leave the drain and
    paho's network thread running); a missing second source after the first is open; a
    missing model after the outbox is open."""
    clip, _ = scene
    config = full_config(tmp_path, clip, default_model, broker, pki)
    expected: type[EdgeAppError]
    if fault == "telemetry":
        config = full_config(
            tmp_path, clip, default_model, broker, pki,
            metrics={"enabled": True, "sink": "cloudwatch", "namespace": "AWS/EC2"},
        )  # fmt: skip
        expected, match = TelemetryError, "namespace"
    elif fault == "second source":
        config = with_second_camera(config, tmp_path / "missing.mp4")
        expected, match = SourceError, "missing.mp4"
    else:
        doc = config.model_dump(mode="json", exclude_none=True)
        doc["detector"]["model"] = str(tmp_path / "missing.tflite")
        config = parse_config(doc)
        expected, match = ModelNotFoundError, "missing.tflite"
    before = Leaks()
    with pytest.raises(expected, match=match):
        EdgeApp(config).start()
    assert before.threads_left() == []
    assert before.files_left() == {}
    assert_outbox_closed(config, open_files())
