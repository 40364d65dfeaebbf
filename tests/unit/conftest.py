"""Fixtures shared by the unit tests: a frozen clock and an empty outbox on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.outbox import Outbox
from edge_app.uplink import encode_batch
from tests.factories import DEVICE


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
