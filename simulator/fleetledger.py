"""The cloud side's books of a fleet run: what each device raised against what arrived, and the
broker's own message rate.

``Ledger`` is fed every events batch the cloud consumer receives (``CloudConsumer.on_batch``)
and counts per device: delivered (distinct event ids), duplicates (copies beyond the first) and
the raise -> delivered lag of each event (receipt time minus the event's ``ts``; both clocks
are this machine's). ``tally`` sets that against the ids the device raised: ``missing`` is every
raised id that never arrived.

``BrokerLoad`` subscribes to Mosquitto's ``$SYS`` tree on the broker's plain (cloud-side)
listener, which has no ACL; the device listener's ACL (the IoT policy mirror) would refuse
``$SYS`` to a device, as IoT Core has no such topics. The fleet's broker publishes ``$SYS``
every second (``Mosquitto(sys_interval=1)``), so a run of seconds has a rate.
"""

from __future__ import annotations

__all__ = ["SYS_TOPICS", "BrokerLoad", "BrokerSummary", "DeviceTally", "Ledger", "percentile"]

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt

from simulator.peer import SubscribingPeer

PUBLISH_RECEIVED = "$SYS/broker/publish/messages/received"
PUBLISH_SENT = "$SYS/broker/publish/messages/sent"
LOAD_RECEIVED = "$SYS/broker/load/messages/received/1min"
LOAD_SENT = "$SYS/broker/load/messages/sent/1min"
CLIENTS = "$SYS/broker/clients/connected"
SYS_TOPICS = (PUBLISH_RECEIVED, PUBLISH_SENT, LOAD_RECEIVED, LOAD_SENT, CLIENTS)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100, nearest rank) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class DeviceTally:
    """One device's delivery: events ``raised``, distinct ones ``delivered``, extra copies
    (``duplicates``), raised but never received (``missing``); lag in seconds."""

    thing: str
    raised: int
    delivered: int
    duplicates: int
    missing: int
    lag_p50_s: float
    lag_p99_s: float
    lag_max_s: float
    behind_s: float
    """Most seconds the device's producer ran behind its schedule (the machine saturated)."""
    outages: tuple[str, ...] = ()


class Ledger:
    """Per-device receipts; thread-safe (fed on the consumer's network thread)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._lag: dict[str, dict[str, float]] = {}  # thing -> event id -> lag at first receipt
        self._copies: dict[str, int] = {}  # thing -> events received, copies included
        self._seqs: dict[str, dict[int, float]] = {}  # thing -> seq -> lag at first receipt
        self._models: dict[str, dict[int, str]] = {}  # thing -> seq -> NAME@VERSION it names
        self.batches = 0

    def feed(self, batch: Mapping[str, Any], received_wall: float | None = None) -> None:
        """Account for one decoded events batch received at ``received_wall`` (Unix s)."""
        now = time.time() if received_wall is None else received_wall
        with self._changed:
            self.batches += 1
            for event in batch.get("events", []):
                thing = str(event.get("device", batch.get("device", "?")))
                seen = self._lag.setdefault(thing, {})
                self._copies[thing] = self._copies.get(thing, 0) + 1
                if event["id"] not in seen:
                    lag = now - _unix(event["ts"])
                    seen[event["id"]] = lag
                    self._seqs.setdefault(thing, {}).setdefault(int(event["seq"]), lag)
                    model = event.get("model")
                    if isinstance(model, dict):
                        name, version = model.get("name"), model.get("version")
                        ref = f"{name}@{version}" if version else str(name)
                        self._models.setdefault(thing, {})[int(event["seq"])] = ref
            self._changed.notify_all()

    def models_after(self, thing: str, seq: int) -> list[str]:
        """The models (``NAME@VERSION``) named by ``thing``'s arrived events after ``seq``, in
        seq order (events without a model, such as health events, left out)."""
        with self._changed:
            models = self._models.get(thing, {})
            return [models[q] for q in sorted(models) if q > seq]

    def holds(self, thing: str, ids: Iterable[str]) -> bool:
        """True when every one of ``ids`` of ``thing`` has arrived."""
        with self._changed:
            seen = self._lag.get(thing, {})
            return all(i in seen for i in ids)

    def delivered_count(self, thing: str) -> int:
        """How many distinct events of ``thing`` have arrived."""
        with self._changed:
            return len(self._lag.get(thing, {}))

    def holds_seqs(self, thing: str, last_seq: int) -> bool:
        """True when every seq 1..``last_seq`` of ``thing`` has arrived."""
        with self._changed:
            seqs = self._seqs.get(thing, {})
            return all(q in seqs for q in range(1, last_seq + 1))

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked on every batch, and every 0.5 s for
        conditions that change elsewhere) or ``timeout`` seconds pass; its last answer."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return predicate()
            with self._changed:
                self._changed.wait(min(left, 0.5))

    def tally(
        self,
        thing: str,
        raised: Iterable[str],
        *,
        behind_s: float = 0.0,
        outages: tuple[str, ...] = (),
    ) -> DeviceTally:
        """``thing``'s delivery of the events ``raised`` (their ids)."""
        ids = set(raised)
        with self._changed:
            seen = dict(self._lag.get(thing, {}))
            copies = self._copies.get(thing, 0)
        delivered = [seen[i] for i in ids if i in seen]
        return _tally(
            thing, len(ids), delivered, duplicates=copies - len(seen), behind_s=behind_s,
            outages=outages,
        )  # fmt: skip

    def tally_seqs(
        self, thing: str, last_seq: int, *, outages: tuple[str, ...] = ()
    ) -> DeviceTally:
        """``thing``'s delivery of seqs 1..``last_seq`` (a device whose ids are not known)."""
        with self._changed:
            seqs = dict(self._seqs.get(thing, {}))
            unique = len(self._lag.get(thing, {}))
            copies = self._copies.get(thing, 0)
        delivered = [seqs[q] for q in range(1, last_seq + 1) if q in seqs]
        return _tally(
            thing, last_seq, delivered, duplicates=copies - unique, behind_s=0.0, outages=outages
        )

    def lags(self) -> list[float]:
        """Every delivered event's lag, seconds, all devices."""
        with self._changed:
            return [lag for seen in self._lag.values() for lag in seen.values()]


def _tally(
    thing: str,
    raised: int,
    delivered: list[float],
    *,
    duplicates: int,
    behind_s: float,
    outages: tuple[str, ...],
) -> DeviceTally:
    return DeviceTally(
        thing=thing,
        raised=raised,
        delivered=len(delivered),
        duplicates=duplicates,
        missing=raised - len(delivered),
        lag_p50_s=round(percentile(delivered, 50), 3),
        lag_p99_s=round(percentile(delivered, 99), 3),
        lag_max_s=round(max(delivered, default=0.0), 3),
        behind_s=round(behind_s, 3),
        outages=outages,
    )


@dataclass(frozen=True, slots=True)
class BrokerSummary:
    """The broker's load while devices raised and drained: PUBLISH packets received and sent
    per second (mean over ``window_s``, from the ``$SYS`` counters), the highest 1-minute
    loads of all MQTT messages received and sent (Mosquitto's exponential moving averages, in
    messages *per minute*, which start at 0 and approach the rate over about a minute, so
    they understate a run of seconds) and the most clients connected at once."""

    publishes_received_per_s: float
    publishes_sent_per_s: float
    load_received_1min_peak: float
    load_sent_1min_peak: float
    clients_peak: int
    window_s: float
    samples: int


class BrokerLoad(SubscribingPeer):
    """Records the broker's ``SYS_TOPICS`` as (monotonic time, value) samples."""

    name = "broker $SYS observer"

    def __init__(self, host: str, port: int, *, client_id: str = "fleet-sys") -> None:
        super().__init__(host, port, [(t, 0) for t in SYS_TOPICS], client_id=client_id)
        self._lock = threading.Lock()
        self._samples: dict[str, list[tuple[float, float]]] = {t: [] for t in SYS_TOPICS}

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            value = float(msg.payload.decode())
        except ValueError:
            return
        with self._lock:
            self._samples.setdefault(msg.topic, []).append((time.monotonic(), value))

    def summary(self, start: float, end: float) -> BrokerSummary:
        """The load between monotonic times ``start`` and ``end``."""
        with self._lock:
            samples = {t: list(s) for t, s in self._samples.items()}
        # Each counter from its last value at or before ``start`` (the baseline) to its last
        # value by ``end``: Mosquitto publishes $SYS every second or two, not on demand.
        window = {t: _between(s, start, end) for t, s in samples.items()}

        def rate(topic: str) -> tuple[float, float]:
            points = window.get(topic, [])
            if len(points) < 2 or points[-1][0] <= points[0][0]:
                return 0.0, 0.0
            (t1, v1), (t2, v2) = points[0], points[-1]
            return (v2 - v1) / (t2 - t1), t2 - t1

        received, span = rate(PUBLISH_RECEIVED)
        sent, _ = rate(PUBLISH_SENT)
        return BrokerSummary(
            publishes_received_per_s=round(received, 2),
            publishes_sent_per_s=round(sent, 2),
            load_received_1min_peak=_peak(window[LOAD_RECEIVED]),
            load_sent_1min_peak=_peak(window[LOAD_SENT]),
            clients_peak=int(max((v for _, v in samples[CLIENTS] if v), default=0)),
            window_s=round(span, 1),
            samples=len(window[PUBLISH_RECEIVED]),
        )


def _between(
    samples: list[tuple[float, float]], start: float, end: float
) -> list[tuple[float, float]]:
    before = [p for p in samples if p[0] <= start][-1:]
    return before + [p for p in samples if start < p[0] <= end]


def _peak(samples: list[tuple[float, float]]) -> float:
    return round(max((v for _, v in samples), default=0.0), 2)


def _unix(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
