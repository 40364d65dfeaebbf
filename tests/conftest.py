"""Session fixtures shared by every test: a test PKI, a real Mosquitto, moto in server mode
(reached by real boto3 clients over HTTP), the real-world data.

A missing mosquitto skips broker tests on a developer machine, but fails them when ``CI`` is
set: CI must never pass by silently skipping the integration tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.broker import BrokerError, Mosquitto, free_port
from simulator.certs import Pki, make_pki

REPO_ROOT = Path(__file__).resolve().parents[1]
REALWORLD = REPO_ROOT / ".." / "shared" / "realworld"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, server, client (CN=edge-test) and rogue certificates, made once per session."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Mosquitto]:
    """A running Mosquitto with a plain and a mutual-TLS listener, stopped at session end."""
    try:
        mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"), pki)
    except BrokerError as exc:
        if os.environ.get("CI", "").lower() not in {"", "0", "false"}:
            pytest.fail(f"CI needs a real Mosquitto: {exc}")
        pytest.skip(f"no Mosquitto broker: {exc}")
    with mosquitto:
        yield mosquitto


@pytest.fixture(scope="session")
def realworld() -> Path:
    """``../shared/realworld`` (real models and clips, never copied into the repository)."""
    if not REALWORLD.is_dir():
        pytest.skip(f"real-world test data not found at {REALWORLD.resolve()}")
    return REALWORLD.resolve()


def _moto_server() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else shutil.which("moto_server")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a ``moto_server`` running for the session."""
    exe = _moto_server()
    if exe is None:
        pytest.skip("moto_server not installed: pip install 'moto[server]'")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1.0):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start on port {port}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
