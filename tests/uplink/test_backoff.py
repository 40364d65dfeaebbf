"""Capped, jittered exponential backoff."""

from __future__ import annotations

import random

import pytest

from edge_app.uplink import Backoff


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for ceiling in ceilings:
        delay = backoff.next()
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.attempts == len(ceilings)


def test_jitter_spreads_delays() -> None:
    backoff = Backoff(1.0, 1.0, random.Random(1))
    delays = {round(backoff.next(), 6) for _ in range(20)}
    assert len(delays) > 10
    assert all(0.5 <= d <= 1.0 for d in delays)


def test_reset_starts_over() -> None:
    backoff = Backoff(1.0, 100.0, random.Random(3))
    for _ in range(6):
        backoff.next()
    assert backoff.ceiling() == 64.0
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.ceiling() == 1.0
    assert backoff.next() <= 1.0


def test_many_attempts_stay_capped() -> None:
    backoff = Backoff(0.1, 30.0, random.Random(5))
    for _ in range(5000):
        assert backoff.next() <= 30.0


def test_same_seed_same_delays() -> None:
    a = Backoff(0.5, 30.0, random.Random(42))
    b = Backoff(0.5, 30.0, random.Random(42))
    assert [a.next() for _ in range(8)] == [b.next() for _ in range(8)]


@pytest.mark.parametrize(
    ("min_s", "max_s", "message"),
    [(0.0, 1.0, "min_s must be > 0"), (2.0, 1.0, "must be >= min_s")],
)
def test_invalid_bounds(min_s: float, max_s: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(min_s, max_s)


def test_a_sibling_has_the_same_bounds_and_its_own_attempts() -> None:
    first = Backoff(1.0, 8.0, random.Random(3))
    for _ in range(3):
        first.next()
    sibling = first.sibling()
    assert sibling.attempts == 0
    assert sibling.ceiling() == 1.0
    for _ in range(10):
        sibling.next()
    assert sibling.ceiling() == 8.0  # capped like the original
    assert first.attempts == 3  # untouched by the sibling's attempts
