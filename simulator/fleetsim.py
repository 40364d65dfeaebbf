"""A fleet simulation: many simulated devices against one broker, audited per device.

One Mosquitto with a mutual-TLS listener whose ACL mirrors the AWS IoT device policy
(``simulator.acl.policy_acl`` of ``edge_app.aws.device_policy``), with every device's
certificate denied every other device's topics; N devices ``cam-0001``.. each with its own
certificate (CN = thing name = client id) running the real delivery stack
(``simulator.fleetdevice.SimDevice``: its own SQLite outbox, ``DrainLoop``, ``MqttTransport``);
scripted outages per device cut that device's link only. On the broker's plain listener (the
cloud side) a ``CloudConsumer`` feeds a ``Ledger`` (raised, delivered, duplicates, missing per
device) and ``BrokerLoad`` reads the broker's ``$SYS`` message rate.

A run goes through ``PHASES`` in order; ``Fleet(on_phase=...)`` hooks are called at the start
of each with the phase and the fleet (its devices, broker and ledger), which is where a rollout
(IoT Jobs, model updates) attaches later: components on each device before ``connect``, the
rollout itself during ``run``, its outcome checked in ``report``.

* ``setup``: certificates (made once in ``<workdir>/pki``, reused), the broker, the consumers;
* ``connect``: every device connects (``--connect-timeout``);
* ``run``: devices raise their events from one shared start time; outages run on schedule;
* ``drain``: wait until every raised event has arrived and every device's outbox is empty
  (its PUBACKs back), or ``drain_timeout_s`` after the last was raised (never a fixed sleep);
* ``report``: the per-device tallies, totals and the broker's rate (``FleetReport``).

Its command line, ``python -m simulator fleet``, is ``simulator.fleetsim_cli``.
"""

from __future__ import annotations

__all__ = ["PHASES", "Fleet", "FleetReport", "Member", "PhaseHook", "fleet_acl"]

import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from edge_app.aws import device_policy
from edge_app.config import TlsConfig
from simulator.acl import policy_acl
from simulator.broker import Mosquitto
from simulator.certs import make_pki
from simulator.cloud import CloudConsumer
from simulator.fleetdevice import SimDevice
from simulator.fleetledger import BrokerLoad, BrokerSummary, DeviceTally, Ledger, percentile
from simulator.fleetplan import FleetPlan

if TYPE_CHECKING:  # the daemon and OpenCV are imported only for a --replay run
    from simulator.fleetreplay import ReplayDevice


PHASES = ("setup", "connect", "run", "drain", "report")
POLICY_ACCOUNT = ("aws", "us-east-1", "123456789012")
"""Partition, region and account of the device policy the broker's ACL mirrors."""
_START_MARGIN_S = 0.2  # devices start raising together this long after the run phase begins

PhaseHook = Callable[[str, "Fleet"], None]
Member: TypeAlias = "SimDevice | ReplayDevice"
"""A fleet device: generated events (``SimDevice``) or the daemon on a clip (``ReplayDevice``)."""


def fleet_acl(things: Sequence[str]) -> str:
    """The broker's ``acl_file`` for ``things``: the IoT device policy, per certificate."""
    return policy_acl(device_policy(*POLICY_ACCOUNT), things)


@dataclass(frozen=True, slots=True)
class FleetReport:
    """What a run found: per-device tallies, totals, the broker's load and each phase's time."""

    devices: list[DeviceTally]
    totals: dict[str, float]
    broker: BrokerSummary
    phases_s: dict[str, float]
    connected: int
    settled: bool
    """Every device's outbox was empty at the end: all its batches acknowledged."""
    complete: bool
    plan: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Fleet:
    """The devices of ``plan`` against one broker, with the cloud side's books.

    ``workdir`` holds the broker's files, every device's outbox and (unless ``pki_dir`` names
    another place) the PKI, reused across runs; the caller owns both. ``on_phase`` hooks run
    at the start of each of ``PHASES``. ``replay_loop`` and ``model_updates`` go to every
    replay device (a rollout's: the clip loops until it ends the capture; where models may be
    downloaded from). After ``run()`` the fleet is stopped; ``devices``,
    ``broker`` and ``ledger`` stay readable.
    """

    def __init__(
        self,
        plan: FleetPlan,
        workdir: Path,
        *,
        on_phase: Sequence[PhaseHook] = (),
        pki_dir: Path | None = None,
        model: Path | None = None,
        connect_timeout_s: float = 30.0,
        progress: Callable[[str], None] | None = None,
        replay_loop: bool = False,
        model_updates: dict[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.workdir = workdir
        self.pki_dir = pki_dir or workdir / "pki"
        self.devices: list[Member] = []
        self._model = model
        self._replay_loop = replay_loop
        self._model_updates = model_updates
        self.broker: Mosquitto | None = None
        self.ledger = Ledger()
        self._hooks = list(on_phase)
        self._connect_timeout_s = connect_timeout_s
        self._say = progress or (lambda _text: None)
        self._phases: dict[str, float] = {}

    def run(self) -> FleetReport:
        """Run every phase; returns the report. Raises ``BrokerError``/``PkiError`` when the
        broker or the certificates cannot be set up, ``EdgeAppError`` when a device cannot
        (its outbox; a replay device's config or model)."""
        plan = self.plan
        with ExitStack() as stack:
            self._phase("setup")
            # Every run starts from empty outboxes: what an earlier run left undelivered in a
            # kept workdir would arrive now and blur this run's books.
            shutil.rmtree(self.workdir / "devices", ignore_errors=True)
            pkis = {thing: make_pki(self.pki_dir, thing) for thing in plan.things}
            ca = next(iter(pkis.values())).ca
            self.broker = Mosquitto(
                self.workdir / "broker", pkis[plan.things[0]], acl=fleet_acl(plan.things),
                sys_interval=1,
            )  # fmt: skip
            stack.enter_context(self.broker)
            broker = self.broker
            load = stack.enter_context(BrokerLoad(broker.host, broker.port))
            consumer = CloudConsumer(broker.host, broker.port, client_id="fleet-cloud")
            consumer.on_batch = self.ledger.feed
            stack.enter_context(consumer)
            self._say(
                f"broker: mosquitto, mutual TLS on :{broker.tls_port} with per-device ACLs; "
                f"cloud side on :{broker.port}"
            )
            for thing in plan.things:
                pki = pkis[thing]
                tls = TlsConfig(ca=ca, cert=pki.client_cert, key=pki.client_key)
                self.devices.append(self._member(thing, broker, tls))
                stack.callback(self.devices[-1].stop)
            # Unwound first: every device's threads start winding down before any is joined.
            stack.callback(self._halt_all)

            self._phase("connect")
            for device in self.devices:
                device.connect()
            connected = self._wait_connected()
            self._say(f"connected: {connected} of {len(self.devices)} devices")

            run_start = time.monotonic()
            self._phase("run")
            t0 = time.monotonic() + _START_MARGIN_S
            # The broker's rate is over the run from its start: a hook (a rollout) may have
            # run the devices for a while already.
            window_start = min(t0, run_start + _START_MARGIN_S)
            for device in self.devices:
                device.run(t0)
            for outage in plan.outages:
                self._say(
                    f"outage: {outage.thing} offline from {outage.start_s:g} s "
                    f"for {outage.duration_s:g} s"
                )
            raise_s = plan.generation_s
            if plan.replay is not None:
                from simulator.fleetreplay import clip_seconds  # noqa: PLC0415 - OpenCV

                raise_s = clip_seconds(plan.replay)
            self.ledger.wait(
                lambda: all(d.done_raising for d in self.devices),
                raise_s + plan.drain_timeout_s,
            )
            self._say(f"raised: {sum(d.tally(self.ledger).raised for d in self.devices)} events")

            self._phase("drain")
            drain_end = time.monotonic() + plan.drain_timeout_s
            complete = self.ledger.wait(self._complete, plan.drain_timeout_s)
            end = time.monotonic()
            # The devices' side of the same fact: each outbox empty, every batch acknowledged
            # (a PUBACK may still be on its way when the cloud already has the batch).
            settled = self.ledger.wait(
                lambda: all(d.settled() for d in self.devices), max(0.0, drain_end - end)
            )

            self._phase("report")
            report = self._report(load.summary(window_start, end), connected, complete, settled)
        self._phases["stop"] = time.monotonic()
        return report

    # -- internals ---------------------------------------------------------------------------

    def _member(self, thing: str, broker: Mosquitto, tls: TlsConfig) -> Member:
        plan = self.plan
        data_dir = self.workdir / "devices" / thing
        if plan.replay is None:
            return SimDevice(
                thing, host=broker.host, port=broker.tls_port, tls=tls, data_dir=data_dir,
                rate=plan.rate, events=plan.events, outages=plan.outages_of(thing),
            )  # fmt: skip
        if self._model is None:
            raise ValueError("a replay fleet needs a model: Fleet(..., model=PATH)")
        from simulator.fleetreplay import ReplayDevice  # noqa: PLC0415 - the daemon, OpenCV

        return ReplayDevice(
            thing, host=broker.host, port=broker.tls_port, tls=tls, data_dir=data_dir,
            clip=plan.replay, model=self._model, outages=plan.outages_of(thing),
            loop=self._replay_loop, model_updates=self._model_updates,
        )  # fmt: skip

    def _halt_all(self) -> None:
        for device in self.devices:
            device.halt()

    def _phase(self, name: str) -> None:
        self._phases[name] = time.monotonic()
        for hook in self._hooks:
            hook(name, self)

    def _wait_connected(self) -> int:
        def count() -> int:
            return sum(d.transport.is_connected for d in self.devices)

        self.ledger.wait(lambda: count() == len(self.devices), self._connect_timeout_s)
        return count()

    def _complete(self) -> bool:
        return all(d.holds_all(self.ledger) for d in self.devices)

    def _report(
        self, broker: BrokerSummary, connected: int, complete: bool, settled: bool
    ) -> FleetReport:
        tallies = [d.tally(self.ledger) for d in self.devices]
        lags = self.ledger.lags()
        totals: dict[str, float] = {
            key: sum(getattr(t, key) for t in tallies)
            for key in ("raised", "delivered", "duplicates", "missing")
        }
        totals |= {
            "lag_p50_s": round(percentile(lags, 50), 3),
            "lag_p99_s": round(percentile(lags, 99), 3),
            "lag_max_s": round(max(lags, default=0.0), 3),
            "behind_s": max((t.behind_s for t in tallies), default=0.0),
            "batches": self.ledger.batches,
        }
        marks = list(self._phases.items())
        phases = {
            name: round(marks[i + 1][1] - at, 2) if i + 1 < len(marks) else 0.0
            for i, (name, at) in enumerate(marks)
        }
        phases.pop("report", None)
        plan = self.plan
        return FleetReport(
            devices=tallies,
            totals=totals,
            broker=broker,
            phases_s=phases,
            connected=connected,
            settled=settled,
            complete=complete
            and totals["missing"] == 0
            and connected == len(self.devices)
            and not any(d.failed for d in self.devices),
            plan={
                "devices": plan.devices,
                "rate": plan.rate,
                "events": plan.events,
                "outages": [o.text for o in plan.outages],
                "drain_timeout_s": plan.drain_timeout_s,
                "replay": None if plan.replay is None else str(plan.replay),
            },
        )
