"""One simulated device of a fleet: the real delivery stack under its own identity.

Each ``SimDevice`` has its own SQLite ``Outbox`` (WAL, synchronous=FULL, as on a device), the
real ``DrainLoop`` and ``MqttTransport`` (MQTT 5, QoS 1, mutual TLS with its own certificate,
client id = thing name, the retained status and last will), and a producer that raises real
``Event``s (the wire schema of docs/events.md) at a fixed rate. A device with scripted outages
reaches the broker through its own ``TcpProxy`` run by a ``FaultScript`` (``down`` refuses and
resets its connections, ``up`` relays again), so one device goes offline while the others
keep their link; the others connect to the broker directly.

Later parts attach to a device without changing it: ``thing``, ``transport`` and ``outbox`` are
public, and ``attach(component)`` adds anything with ``start()``/``stop()`` (a Jobs agent, a
model updater), started after the uplink connects and stopped before it disconnects.

Threads per device: paho's network thread, ``fleet-<thing>-drain``, ``fleet-<thing>-producer``
and, with outages, ``fleet-<thing>-outage`` plus the proxy's; all end on ``stop()``.
"""

from __future__ import annotations

__all__ = ["Component", "DeviceBase", "SimDevice"]

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from edge_app.clock import Clock, SystemClock
from edge_app.config import TlsConfig
from edge_app.domain import Event, ModelRef, Phase, Severity
from edge_app.errors import EdgeAppError
from edge_app.ids import new_ulid
from edge_app.outbox import Outbox
from edge_app.uplink import DrainLoop, MqttTransport, encode_batch, status_payload
from simulator.broker import free_port
from simulator.fleetledger import DeviceTally, Ledger
from simulator.fleetplan import OutageSpec, outage_script
from simulator.outage import FaultScript
from simulator.proxy import TcpProxy

log = logging.getLogger(__name__)

TOPIC_PREFIX = "edge-app/{thing}"
_MODEL = ModelRef("fleet-sim", "000000000000")
_OUTBOX_BYTES = 256 * 1024 * 1024
_OUTBOX_AGE_S = 7 * 86_400.0
# A device offline for seconds should be back within about a second of its link: reconnect
# delays are capped low (the daemon's default cap is 30 s).
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 0.2, 1.0
_JOIN_S = 10.0


class Component(Protocol):
    """Something attached to a device (``SimDevice.attach``), started and stopped with it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class DeviceBase:
    """What every fleet device shares: its thing name, its scripted ``outages`` (through its
    own ``proxy`` in front of ``host:port``; ``link`` is where it connects), the attached
    components and its threads, all ended by ``_wind_down``."""

    def __init__(self, thing: str, host: str, port: int, outages: tuple[OutageSpec, ...]) -> None:
        self.thing = thing
        self.outages = outages
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._components: list[Component] = []
        self.proxy: TcpProxy | None = None
        if outages:
            self.proxy = TcpProxy(free_port(), host, port)
            host, port = "127.0.0.1", self.proxy.listen_port
        self.link = (host, port)

    def attach(self, component: Component) -> None:
        """Run ``component`` with this device (call before ``connect``)."""
        self._components.append(component)

    def halt(self) -> None:
        """Tell every thread of this device to stop, without waiting (``stop`` waits): a fleet
        halts all its devices first, so their threads wind down together."""
        self._stop.set()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"fleet-{self.thing}-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _open_link(self) -> None:
        if self.proxy is not None:
            self.proxy.up()

    def _start_components(self) -> None:
        for component in self._components:
            component.start()

    def _run_outages(self, t0: float) -> None:
        """The outage script, timed from ``t0`` (the run's start, shared by every device)."""
        if self.proxy is None:
            return
        script = FaultScript.parse(outage_script(self.outages))
        self._spawn("outage", lambda: self._script(t0, script))

    def _script(self, t0: float, script: FaultScript) -> None:
        # The script's waits are relative: it starts at t0, as the producer does.
        if self.proxy is None or self._stop.wait(max(0.0, t0 - time.monotonic())):
            return
        script.run(self.proxy, stop=self._stop)

    def _wind_down(self) -> None:
        """Halt, join the threads, stop the components (newest first)."""
        self.halt()
        for thread in self._threads:
            thread.join(_JOIN_S)
        self._threads = []
        for component in reversed(self._components):
            component.stop()
        self._components = []

    def _close_proxy(self) -> None:
        if self.proxy is not None:
            self.proxy.close()


class SimDevice(DeviceBase):
    """Device ``thing`` raising ``events`` events at ``rate`` events/s into its outbox in
    ``data_dir``, delivered over mutual TLS (``tls``) to ``host:port``; with ``outages``,
    through its own proxy. Call ``connect()``, then ``run(t0)``; ``stop()`` ends everything
    and closes the outbox (the caller owns ``data_dir``)."""

    def __init__(
        self,
        thing: str,
        *,
        host: str,
        port: int,
        tls: TlsConfig,
        data_dir: Path,
        rate: float,
        events: int,
        outages: tuple[OutageSpec, ...] = (),
        clock: Clock | None = None,
    ) -> None:
        super().__init__(thing, host, port, outages)
        host, port = self.link
        self.topic_prefix = TOPIC_PREFIX.format(thing=thing)
        self._clock = clock or SystemClock()
        self._rate, self._events = rate, events
        self._lock = threading.Lock()
        self._raised: dict[str, int] = {}  # event id -> seq
        self.behind_s = 0.0
        """Most seconds the producer fell behind its schedule (a saturated machine)."""
        self.failed: str | None = None
        """Why the producer stopped early (its outbox refused an event), else None."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            data_dir / "outbox.db",
            clock=self._clock,
            device=thing,
            max_bytes=_OUTBOX_BYTES,
            max_age_s=_OUTBOX_AGE_S,
            encoder=encode_batch,
        )
        self.transport = MqttTransport(
            host,
            port,
            client_id=thing,
            tls=tls,
            will=(f"{self.topic_prefix}/status", status_payload("offline")),
            reconnect_min_s=_RECONNECT_MIN_S,
            reconnect_max_s=_RECONNECT_MAX_S,
        )
        self.drain = DrainLoop(
            self.outbox,
            self.transport,
            topic=f"{self.topic_prefix}/events",
            clock=self._clock,
            stop=self._stop,
        )

    # -- what the fleet reads ----------------------------------------------------------------

    @property
    def raised(self) -> dict[str, int]:
        """A copy of every event raised so far: id -> seq."""
        with self._lock:
            return dict(self._raised)

    @property
    def done_raising(self) -> bool:
        """True once every event is raised, or the producer stopped on an error."""
        with self._lock:
            return len(self._raised) >= self._events or self.failed is not None

    def holds_all(self, ledger: Ledger) -> bool:
        """True once every event is raised and each has arrived in ``ledger``."""
        with self._lock:
            raised = len(self._raised)
        # Counting first keeps this cheap while a backlog drains: the id check runs once the
        # numbers match (the fleet asks after every batch received).
        return (
            self.done_raising
            and ledger.delivered_count(self.thing) >= raised
            and ledger.holds(self.thing, self.raised)
        )

    def settled(self) -> bool:
        """True when the outbox holds nothing: every event raised so far was acknowledged."""
        return self.outbox.stats().depth == 0

    def tally(self, ledger: Ledger) -> DeviceTally:
        """This device's delivery, by event id."""
        return ledger.tally(
            self.thing,
            self.raised,
            behind_s=self.behind_s,
            outages=tuple(o.text for o in self.outages),
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Start the uplink (a broker that is down is retried by the transport), the drain
        thread and the attached components."""
        self._open_link()
        self.transport.connect()
        self._spawn("drain", self.drain.run)
        self._start_components()

    def run(self, t0: float) -> None:
        """Start raising events and the outage script, both timed from ``t0`` (monotonic
        seconds: the run's start, shared by every device)."""
        self._spawn("producer", lambda: self._produce(t0))
        self._run_outages(t0)

    def stop(self) -> None:
        """Stop raising, draining and the outage script; disconnect; close the outbox.
        Idempotent."""
        self._wind_down()
        self.transport.disconnect()
        self._close_proxy()
        self.outbox.close()

    # -- internals ---------------------------------------------------------------------------

    def _produce(self, t0: float) -> None:
        for i in range(self._events):
            due = t0 + i / self._rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.behind_s = max(self.behind_s, time.monotonic() - due)
            try:
                stored = self.outbox.enqueue(self._event())
            except EdgeAppError as exc:
                # A full disk, say: this device stops raising; the report shows how far it got.
                log.error("%s: stopped raising events: %s", self.thing, exc)
                self.failed = str(exc)
                return
            assert stored.seq is not None  # the outbox assigns it in the commit
            with self._lock:
                self._raised[stored.id] = stored.seq
            self.drain.notify()

    def _event(self) -> Event:
        wall = self._clock.time()
        return Event(
            id=new_ulid(wall),
            device=self.thing,
            camera="gate",
            rule="intrusion",
            phase=Phase.START,
            severity=Severity.MEDIUM,
            wall=wall,
            mono=self._clock.monotonic(),
            label="person",
            score=0.87,
            bbox=(0.1, 0.2, 0.3, 0.4),
            model=_MODEL,
            zone="yard",
        )
