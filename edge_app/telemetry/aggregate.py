"""One-minute statistic sets: ``MetricDatum`` and the ``MinuteAggregator`` that makes them.

Every sample tick (a few seconds) the aggregator reads the registry: a gauge contributes its
value, a counter the amount it grew since the last tick, a histogram the observations made
since the last tick. When a minute (wall clock, aligned to :00) is over, each metric that had
samples becomes one ``MetricDatum`` stamped with the minute's start: the original time, which
is what CloudWatch receives however late the device comes online.
"""

from __future__ import annotations

__all__ = ["MetricDatum", "MinuteAggregator"]

import json
import math
from dataclasses import dataclass

from edge_app.telemetry.registry import (
    Counter,
    Gauge,
    Histogram,
    Instrument,
    MetricKey,
    Registry,
    Unit,
)


@dataclass(frozen=True, slots=True)
class MetricDatum:
    """A statistic set of one metric over one period starting at ``ts`` (Unix seconds, UTC).

    ``count`` samples with ``total`` sum, ``minimum`` and ``maximum`` (CloudWatch
    ``StatisticValues``). For a counter the samples are per-tick increments, so ``total`` is
    how much it grew in the period.
    """

    name: str
    dims: tuple[tuple[str, str], ...]
    ts: float
    unit: Unit
    count: int
    total: float
    minimum: float
    maximum: float
    kind: str = "gauge"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a datum needs count >= 1 samples, got {self.count}")
        if not self.minimum <= self.maximum:
            raise ValueError(f"datum {self.name}: minimum {self.minimum} > maximum {self.maximum}")

    @property
    def mean(self) -> float:
        return self.total / self.count

    def to_json(self) -> str:
        """Compact JSON for the metrics lane of the outbox."""
        return json.dumps(
            {
                "n": self.name,
                "d": [list(p) for p in self.dims],
                "t": self.ts,
                "u": self.unit,
                "c": self.count,
                "s": self.total,
                "lo": self.minimum,
                "hi": self.maximum,
                "k": self.kind,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, *, ts: float | None = None) -> MetricDatum:
        """Parse ``to_json``'s text; ``ts`` (the lane row's time, corrected after a clock
        step) overrides the time written in it."""
        doc = json.loads(text)
        return cls(
            name=doc["n"],
            dims=tuple((str(k), str(v)) for k, v in doc["d"]),
            ts=float(doc["t"]) if ts is None else ts,
            unit=doc["u"],
            count=int(doc["c"]),
            total=float(doc["s"]),
            minimum=float(doc["lo"]),
            maximum=float(doc["hi"]),
            kind=str(doc.get("k", "gauge")),
        )


@dataclass(slots=True)
class _Acc:
    unit: Unit
    kind: str
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)


class MinuteAggregator:
    """Turns registry samples into per-period ``MetricDatum``s. Used by one thread.

    ``period_s`` is 60 in production (CloudWatch's standard resolution); tests may shorten it.
    """

    def __init__(self, registry: Registry, *, period_s: float = 60.0) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0 seconds, got {period_s}")
        self._registry = registry
        self._period = period_s
        self._start: float | None = None
        self._acc: dict[MetricKey, _Acc] = {}
        self._last_total: dict[MetricKey, float] = {}

    def sample(self, now_wall: float) -> list[MetricDatum]:
        """Take one sample at ``now_wall`` (Unix s); returns the data of periods now closed."""
        start = math.floor(now_wall / self._period) * self._period
        closed: list[MetricDatum] = []
        if self._start is not None and start != self._start:
            closed = self.close()
        self._start = start
        for item in self._registry.instruments():
            if isinstance(item, Gauge):
                value = item.value
                if not math.isnan(value):
                    self._acc_for(item).add(value)
            elif isinstance(item, Counter):
                last = self._last_total.get(item.key, 0.0)
                self._last_total[item.key] = item.value
                self._acc_for(item).add(max(0.0, item.value - last))
            elif isinstance(item, Histogram):
                values = item.drain()
                if values:
                    acc = self._acc_for(item)
                    for value in values:
                        acc.add(value)
        return closed

    def close(self) -> list[MetricDatum]:
        """End the current period now (on shutdown) and return its data."""
        if self._start is None:
            return []
        out = [
            MetricDatum(
                k.name, k.dims, self._start, a.unit, a.count, a.total, a.minimum, a.maximum, a.kind
            )
            for k, a in sorted(self._acc.items())
            if a.count
        ]
        self._acc.clear()
        return out

    def _acc_for(self, item: Instrument) -> _Acc:
        acc = self._acc.get(item.key)
        if acc is None:
            acc = self._acc[item.key] = _Acc(item.unit, item.kind)
        return acc
