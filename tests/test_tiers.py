"""The tier markers and their guard (tests/conftest.py): the fast tier (``make check``, no
``broker``, ``model`` nor ``realworld`` marker) can start no Mosquitto and finds no model, and a
test using a tier's fixture carries its marker without saying so."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge_app.models import default_model_dir
from simulator.broker import BINARY_ENV, BrokerError, Mosquitto, ensure_mosquitto, find_mosquitto


def test_a_test_without_the_broker_marker_cannot_start_mosquitto(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    assert request.node.get_closest_marker("broker") is None
    with pytest.raises(BrokerError, match=r"mark-the-test-broker"):
        Mosquitto(tmp_path)
    # Nor install one: the guard's binary is final, whoever runs the tests (root on Debian too).
    with pytest.raises(BrokerError, match=BINARY_ENV):
        ensure_mosquitto()


def test_a_test_without_the_model_marker_sees_an_empty_model_cache(
    request: pytest.FixtureRequest,
) -> None:
    assert request.node.get_closest_marker("model") is None
    cache = default_model_dir()
    assert cache.is_dir()
    assert list(cache.iterdir()) == []


def test_edge_app_mosquitto_names_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BINARY_ENV, sys.executable)
    assert find_mosquitto() == sys.executable


@pytest.mark.usefixtures("broker")
def test_a_test_using_the_broker_fixture_is_marked_broker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("broker") is not None
    assert request.node.get_closest_marker("model") is None


def test_a_test_using_the_realworld_fixture_is_marked_realworld(
    request: pytest.FixtureRequest, realworld: Path
) -> None:
    assert request.node.get_closest_marker("realworld") is not None
    assert realworld.is_dir()
