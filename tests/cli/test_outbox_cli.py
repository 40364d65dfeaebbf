"""`edge-app outbox status|peek|export` and the read-only reader behind them."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.cli import main
from edge_app.clock import FakeClock
from edge_app.domain import Severity
from edge_app.errors import OutboxError
from edge_app.outbox import Outbox, OutboxReader
from edge_app.uplink import encode_batch
from tests.factories import DEVICE, make_event


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    clock = FakeClock()
    with Outbox(
        tmp_path / "outbox.db",
        clock=clock,
        device=DEVICE,
        max_bytes=64 << 20,
        max_age_s=86400.0,
        encoder=encode_batch,
    ) as box:
        for i in range(5):
            severity = Severity.HIGH if i < 2 else Severity.LOW
            box.enqueue(make_event(clock, rule="door" if i else "gate", severity=severity))
            clock.advance(1.0)
        yield box


def test_status_json(outbox: Outbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "--db", str(outbox.path), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["depth"] == 5
    assert status["last_seq"] == 5
    assert status["by_severity"] == {"high": 2, "low": 3}
    assert status["by_rule"] == {"gate": 1, "door": 4}
    assert status["bytes"] == outbox.stats().bytes
    assert status["oldest_age_s"] is not None


def test_peek_and_export(
    outbox: Outbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["outbox", "--db", str(outbox.path), "peek", "2"]) == 0
    peeked = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in peeked] == [1, 2]
    out = tmp_path / "export.jsonl"
    assert main(["outbox", "--db", str(outbox.path), "export", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in exported] == [1, 2, 3, 4, 5]


def test_export_is_private_whatever_the_umask(outbox: Outbox, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    out.write_text("stale\n")
    out.chmod(0o644)
    old = os.umask(0o022)
    try:
        assert main(["outbox", "--db", str(outbox.path), "export", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(out.read_text().splitlines()) == 5


def test_reader_never_releases_the_daemons_leases(outbox: Outbox) -> None:
    batch = outbox.lease(3, 1 << 20)
    assert batch is not None
    with OutboxReader(outbox.path) as reader:
        assert reader.summary().leased == 3
        assert len(list(reader.bodies(chunk=2))) == 5  # chunked reads see every row once
    assert outbox.stats().leased == 3  # still out: a reader must not cause redelivery
    outbox.ack(batch)
    assert outbox.stats().depth == 2


def test_missing_outbox_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["outbox", "--db", str(tmp_path / "none.db"), "status"]) == 2
    assert "no outbox at" in capsys.readouterr().err
    with pytest.raises(OutboxError, match="no outbox"):
        OutboxReader(tmp_path / "none.db")
