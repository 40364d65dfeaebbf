"""Session fixtures shared by every test: a test PKI, a real Mosquitto, the real-world data.

A missing mosquitto skips broker tests on a developer machine, but fails them when ``CI`` is
set: CI must never pass by silently skipping the integration tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.broker import BrokerError, Mosquitto
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
