"""Session fixtures shared by every test: a test PKI, a real Mosquitto, moto in server mode
(reached by real boto3 clients over HTTP), the real-world data, the pulled default model, a
generated scene; and per test a frozen clock and an empty outbox on it.

``default_model`` pulls the manifest's default model once per session into a temporary cache
with the project's own ``pull()`` (here, with no internet, through the npm source). A missing
mosquitto or model skips the tests that need it on a developer machine, but fails them when
``CI`` is set: CI must never pass by silently skipping those tests.

The markers ``broker``, ``model``, ``realworld`` and ``slow`` select tiers (``make check`` runs
the tests with none of them). The first three (and ``slow`` for moto) are applied here from the
fixtures a test uses (``TIER_FIXTURES``), so a new test cannot forget them; and a test without
``broker`` cannot start Mosquitto (``$EDGE_APP_MOSQUITTO`` points at a missing file) nor one
without ``model`` find the pulled default model (``$EDGE_APP_MODEL_DIR`` is an empty folder),
so a test that reaches them some other way fails in every run instead of slipping into the
fast tier. ``slow`` is otherwise set by hand on tests that take seconds.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.aws import claim_policy, device_policy
from edge_app.clock import FakeClock
from edge_app.errors import ModelError
from edge_app.models import load_manifest, pull
from edge_app.outbox import Outbox
from edge_app.uplink import encode_batch
from simulator.acl import policy_acl
from simulator.broker import BINARY_ENV, BrokerError, Mosquitto
from simulator.certs import Pki, make_pki
from simulator.scene import SceneTruth, generate_scene
from tests.factories import DEVICE
from tests.moto import MotoStartError, start_moto

REPO_ROOT = Path(__file__).resolve().parents[1]
REALWORLD = REPO_ROOT / ".." / "shared" / "realworld"
FLEET = ("thing-a", "thing-b")
"""The devices of ``policy_broker``: each has its own certificate (CN = thing name)."""
POLICY_ACCOUNT = ("aws", "us-east-1", "123456789012")
"""Partition, region and account of the device policy ``policy_broker`` enforces."""
CLAIM = "claim-fleet"
"""The CN of the claim certificate (fleet provisioning by claim) ``policy_broker`` knows."""
TEMPLATE = "edge-app"
"""The provisioning template the claim certificate may use."""
TIER_FIXTURES = {
    "broker": "broker",
    "policy_broker": "broker",
    "default_model": "model",
    "realworld": "realworld",
    "moto_endpoint": "slow",  # moto's server takes seconds to start, its calls are HTTP
    "wheel": "slow",  # builds the package and a fresh venv (tests/deploy)
    "trained": "slow",  # trains a Keras detector and converts it (tests/convert)
}
"""Fixture -> the marker every test using it (directly or through another fixture) gets."""
NO_BROKER = "/nonexistent/mark-the-test-broker-to-start-mosquitto"
"""``$EDGE_APP_MOSQUITTO`` of a test without the ``broker`` marker: its BrokerError says why."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with the tier of the fixtures it uses (``TIER_FIXTURES``)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker in sorted({TIER_FIXTURES[name] for name in used & TIER_FIXTURES.keys()}):
            item.add_marker(marker)


@pytest.fixture(autouse=True)
def _tier_guard(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Hides Mosquitto from a test not marked ``broker``, and the default model's cache from
    one not marked ``model`` (see the module docstring)."""
    if request.node.get_closest_marker("broker") is None:
        monkeypatch.setenv(BINARY_ENV, NO_BROKER)
    if request.node.get_closest_marker("model") is None:
        monkeypatch.setenv("EDGE_APP_MODEL_DIR", str(tmp_path_factory.mktemp("no-model-cache")))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, server, client (CN=edge-test) and rogue certificates, made once per session."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _mosquitto(workdir: Path, pki: Pki, acl: str | None = None) -> Mosquitto:
    try:
        return Mosquitto(workdir, pki, acl=acl)
    except BrokerError as exc:
        if os.environ.get("CI", "").lower() not in {"", "0", "false"}:
            pytest.fail(f"CI needs a real Mosquitto: {exc}")
        pytest.skip(f"no Mosquitto broker: {exc}")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Mosquitto]:
    """A running Mosquitto with a plain and a mutual-TLS listener, stopped at session end."""
    with _mosquitto(tmp_path_factory.mktemp("mosquitto"), pki) as mosquitto:
        yield mosquitto


@pytest.fixture(scope="session")
def fleet(pki: Pki) -> dict[str, Pki]:
    """A client certificate for each thing of ``FLEET``, signed by the session's test CA."""
    return {thing: make_pki(pki.ca.parent, thing) for thing in FLEET}


@pytest.fixture(scope="session")
def claim_pki(pki: Pki) -> Pki:
    """The claim certificate (CN ``CLAIM``) a batch of devices would share."""
    return make_pki(pki.ca.parent, CLAIM)


@pytest.fixture(scope="session")
def policy_broker(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, fleet: dict[str, Pki]
) -> Iterator[Mosquitto]:
    """A Mosquitto whose mutual-TLS listener enforces the IoT device policy of
    ``edge-app aws provision`` (``simulator.acl``) for ``FLEET``, and the claim policy for the
    ``CLAIM`` certificate; its plain listener is the unrestricted cloud side (shadow emulator,
    fleet provisioning, consumers)."""
    claims = {CLAIM: claim_policy(*POLICY_ACCOUNT, TEMPLATE)}
    acl = policy_acl(device_policy(*POLICY_ACCOUNT), FLEET, claims=claims)
    with _mosquitto(tmp_path_factory.mktemp("policy-mosquitto"), pki, acl) as mosquitto:
        yield mosquitto


@pytest.fixture(scope="session")
def realworld() -> Path:
    """``../shared/realworld`` (real models and clips, never copied into the repository)."""
    if not REALWORLD.is_dir():
        pytest.skip(f"real-world test data not found at {REALWORLD.resolve()}")
    return REALWORLD.resolve()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server running for the session."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        pytest.skip("moto server not installed: pip install 'moto[server]'")
    try:
        proc, url = start_moto()
    except MotoStartError as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the verified default model file (sha256 checked), in a session model cache."""
    catalog = load_manifest()
    spec = catalog.default_spec()
    cache = tmp_path_factory.mktemp("model-cache")
    try:
        return pull(spec, cache, timeout=120.0)
    except ModelError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the default model {spec.name}: {exc}")
        pytest.skip(f"cannot pull the default model {spec.name}: {exc}")


@pytest.fixture(scope="session")
def v1_model(realworld: Path) -> Path:
    """``ssd_mobilenet_v1_coco_quant.tflite`` from ``../shared/realworld`` (skips if absent)."""
    return realworld / "models" / "ssd_mobilenet_v1_coco_quant.tflite"


@pytest.fixture(scope="session")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SceneTruth]:
    """A generated 10 s clip (640x360, 10 fps) of real photographs, with its exact truth."""
    out = tmp_path_factory.mktemp("scene")
    truth = generate_scene(out / "scene.mp4", out / "scene.json", seconds=10.0, seed=0)
    return out / "scene.mp4", truth


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox(tmp_path: Path, clock: FakeClock) -> Iterator[Outbox]:
    """An empty outbox in ``tmp_path`` (64 MiB, one hour), closed after the test."""
    with Outbox(
        tmp_path / "outbox.db",
        clock=clock,
        device=DEVICE,
        max_bytes=64 * 1024 * 1024,
        max_age_s=3600.0,
        encoder=encode_batch,
    ) as box:
        yield box


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (ENOSPC tests); skips unless root may mount one."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; run as root to test ENOSPC")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
