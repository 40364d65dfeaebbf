"""The metrics registry: counters, gauges and histograms keyed by name and dimensions.

Cheap on the hot path by design: the frame loop never touches the registry. A collector reads
the counters the parts already keep (``CameraStats``, ``OutboxStats``, ``DrainStats``) every few
seconds and copies them here; only rare paths (an event raised, a reconnect) call ``inc``.
Every instrument is guarded by its own small lock, so readers on other threads (the HTTP
endpoint, the aggregator) see consistent values.
"""

from __future__ import annotations

__all__ = ["Counter", "Gauge", "Histogram", "Instrument", "MetricKey", "Registry", "Unit"]

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Unit = Literal["Count", "Count/Second", "Milliseconds", "Seconds", "Bytes", "Percent", "None"]
"""CloudWatch unit names (the subset we use)."""

Kind = Literal["counter", "gauge", "histogram"]

_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True, slots=True, order=True)
class MetricKey:
    """A metric's identity: CamelCase ``name`` and sorted ``(dimension, value)`` pairs."""

    name: str
    dims: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _NAME_OK:
            raise ValueError(f"metric name must be CamelCase letters/digits, got {self.name!r}")
        if list(self.dims) != sorted(self.dims):
            raise ValueError(f"metric dims must be sorted by name, got {self.dims!r}")

    @classmethod
    def of(cls, name: str, dims: Mapping[str, str]) -> MetricKey:
        return cls(name, tuple(sorted((str(k), str(v)) for k, v in dims.items())))


@dataclass(slots=True)
class Instrument:
    """Common fields of the three kinds; ``lock`` guards the value fields of subclasses."""

    key: MetricKey
    unit: Unit
    help: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    kind: Kind = "gauge"


@dataclass(slots=True)
class Counter(Instrument):
    """A total that only grows (events raised, bytes sent)."""

    kind: Kind = "counter"
    value: float = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            raise ValueError(f"a counter only grows: inc() takes >= 0, got {amount}")
        with self.lock:
            self.value += amount

    def set_total(self, total: float) -> None:
        """Copy a total kept elsewhere (a collector reading ``DrainStats``); never goes down."""
        with self.lock:
            self.value = max(self.value, float(total))


@dataclass(slots=True)
class Gauge(Instrument):
    """A value that goes up and down (outbox depth, RSS). ``nan`` means "not known"."""

    kind: Kind = "gauge"
    value: float = math.nan

    def set(self, value: float) -> None:
        with self.lock:
            self.value = float(value)


@dataclass(slots=True)
class Histogram(Instrument):
    """Observations (inference ms). Keeps the observations not yet aggregated (``drain``) and
    the last ``window`` ones for quantiles, plus lifetime count and sum (Prometheus summary)."""

    kind: Kind = "histogram"
    window: int = 1024
    count: int = 0
    total: float = 0.0
    _pending: list[float] = field(default_factory=list, repr=False)
    _recent: deque[float] = field(default_factory=deque, repr=False)

    def observe_many(self, values: Iterable[float]) -> None:
        """Record several observations at once (one lock round for a collector tick)."""
        values = [float(v) for v in values]
        if not values:
            return
        with self.lock:
            self.count += len(values)
            self.total += sum(values)
            self._pending.extend(values)
            self._recent.extend(values)
            while len(self._recent) > self.window:
                self._recent.popleft()
            # an aggregator that stopped draining must not grow memory without bound
            if len(self._pending) > 100 * self.window:
                del self._pending[: len(self._pending) - 100 * self.window]

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def drain(self) -> list[float]:
        """The observations since the last ``drain``, and forget them (aggregator side)."""
        with self.lock:
            out, self._pending = self._pending, []
        return out

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1, nearest rank) of the last ``window`` observations; nan if
        there are none."""
        with self.lock:
            data = sorted(self._recent)
        if not data:
            return math.nan
        rank = min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))
        return data[rank]


_Factory = Callable[[MetricKey], Instrument]


class Registry:
    """All instruments of the process, created on first use and then reused. Thread-safe.

    ``base_dims`` (``{"device": thing}``) are added to every key so sinks need not know them.
    """

    def __init__(self, base_dims: Mapping[str, str] | None = None) -> None:
        self._base = dict(base_dims or {})
        self._lock = threading.Lock()
        self._items: dict[MetricKey, Instrument] = {}

    def counter(self, name: str, unit: Unit = "Count", help: str = "", **dims: str) -> Counter:
        """The counter ``name`` with ``dims`` (created at 0)."""
        item = self._get(name, dims, lambda k: Counter(k, unit, help))
        if not isinstance(item, Counter):
            raise TypeError(f"metric {name} is a {item.kind}, not a counter")
        return item

    def gauge(self, name: str, unit: Unit = "None", help: str = "", **dims: str) -> Gauge:
        """The gauge ``name`` with ``dims`` (created unknown, nan)."""
        item = self._get(name, dims, lambda k: Gauge(k, unit, help))
        if not isinstance(item, Gauge):
            raise TypeError(f"metric {name} is a {item.kind}, not a gauge")
        return item

    def histogram(
        self,
        name: str,
        unit: Unit = "Milliseconds",
        help: str = "",
        **dims: str,
    ) -> Histogram:
        """The histogram ``name`` with ``dims``."""
        item = self._get(name, dims, lambda k: Histogram(k, unit, help))
        if not isinstance(item, Histogram):
            raise TypeError(f"metric {name} is a {item.kind}, not a histogram")
        return item

    def instruments(self) -> list[Instrument]:
        """Every instrument, sorted by key (stable output for /metrics)."""
        with self._lock:
            return [self._items[k] for k in sorted(self._items)]

    def _get(self, name: str, dims: Mapping[str, str], make: _Factory) -> Instrument:
        key = MetricKey.of(name, {**self._base, **dims})
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = make(key)
            return item
