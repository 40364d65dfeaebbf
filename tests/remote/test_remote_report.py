"""Rejection reports within byte budgets (edge_app.remote.report)."""

from __future__ import annotations

import json

import pytest

from edge_app.config import ConfigSnapshot
from edge_app.domain import ModelRef
from edge_app.errors import FieldError
from edge_app.remote.report import (
    REPORT_MAX_BYTES,
    bounded_errors,
    clip,
    encoded_size,
    rejected_report,
)
from tests.config.test_remote_overlay import local_config


@pytest.mark.parametrize(
    "text",
    [
        "short enough",
        "a" * 5000,
        "é" * 700,  # 6 bytes each once escaped
        "😀" * 300,  # 12 bytes each (a surrogate pair)
        'quote " and backslash \\ ' * 50,
        "head " + "x" * 3000 + " tail",
    ],
)
def test_clip_fits_the_budget_as_sent(text: str) -> None:
    got = clip(text, 100)
    assert encoded_size(got) - 2 <= 100
    if encoded_size(text) - 2 <= 100:
        assert got == text
    else:
        head, mark, tail = got.partition("...")
        assert mark == "..."
        assert text.startswith(head)
        assert text.endswith(tail)
        assert len(head) > 0


def test_bounded_errors_keeps_order_and_counts_the_rest() -> None:
    errors = [FieldError(f"f{i}", "r" * 40) for i in range(50)]
    shown, more = bounded_errors(errors, 300)
    assert encoded_size(shown) <= 300
    assert [e["field"] for e in shown] == [f"f{i}" for i in range(len(shown))]
    assert more == 50 - len(shown)
    assert 0 < len(shown) < 50
    assert bounded_errors(errors, 10) == ([], 50)
    assert bounded_errors([], 10) == ([], 0)


def test_rejected_report_stays_within_its_budget_whatever_the_errors() -> None:
    snapshot = ConfigSnapshot.of(local_config(), "last-good", 2**63 - 1)
    huge = [FieldError("é" * 5000, "😀" * 5000) for _ in range(100)]
    model = ModelRef("é" * 5000, "7046f31a72ec")  # a model given by path may have any name
    report = rejected_report(snapshot, model, 2**63 - 1, huge, '"\\' * 32)
    assert len(json.dumps(report, separators=(",", ":"))) <= REPORT_MAX_BYTES
    config = report["state"]["reported"]["config"]
    assert len(config["errors"]) >= 1  # at least the first error always fits
    assert config["more_errors"] == 100 - len(config["errors"])
    assert (config["status"], config["rejected_version"]) == ("rejected", 2**63 - 1)
