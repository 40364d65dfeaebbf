"""``python -m simulator fleet``: a small fleet on a real Mosquitto with per-device ACLs.

The broker tests run one fleet for the module (4 devices, real certificates, the real delivery
stack, one device cut off for a while) and check its books; a hook at the ``report`` phase,
while the broker still runs, tries one device's certificate on another device's topics. The
rest is the plan and the command line, which need no broker.
"""

from __future__ import annotations

import argparse
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_app.aws import MqttProbe
from edge_app.config import TlsConfig
from edge_app.domain import format_utc
from edge_app.uplink import tls_context
from simulator.__main__ import main as simulator_main
from simulator.fleetledger import CLIENTS, PUBLISH_RECEIVED, BrokerLoad, Ledger, percentile
from simulator.fleetplan import FleetPlan, OutageSpec, outage_script, random_outages
from simulator.fleetsim import PHASES, Fleet, FleetReport
from simulator.fleetsim_cli import plan_from_args, register

NOT_AUTHORIZED = 135
OUTAGE = OutageSpec("cam-0002", 0.5, 1.5)
PLAN = FleetPlan(devices=4, rate=20.0, events=60, outages=(OUTAGE,), drain_timeout_s=30.0)


@dataclass
class Seen:
    """What the hook saw: the phases in order, the broker's answers to the probes, and what
    the components attached to each device were told."""

    phases: list[str] = field(default_factory=list)
    answers: dict[str, tuple[bool, int | None]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Recorder:
    """A component attached to a device (where a Jobs agent or model updater would go)."""

    thing: str
    seen: Seen

    def start(self) -> None:
        self.seen.calls.append(("start", self.thing))

    def stop(self) -> None:
        self.seen.calls.append(("stop", self.thing))


def _context(pki_dir: Path, thing: str) -> ssl.SSLContext:
    return tls_context(
        TlsConfig(
            ca=pki_dir / "ca.crt",
            cert=pki_dir / f"client-{thing}.crt",
            key=pki_dir / f"client-{thing}.key",
        )
    )


def _probe(fleet: Fleet, seen: Seen) -> None:
    """As cam-0001's certificate: publish on its own topic, on cam-0002's, and on cam-0002's
    while claiming cam-0002's client id."""
    broker = fleet.broker
    assert broker is not None
    tries = [
        ("own", "cam-0001", "edge-app/cam-0001/events"),
        ("other", "cam-0001", "edge-app/cam-0002/events"),
        ("impostor", "cam-0002", "edge-app/cam-0002/events"),
    ]
    for name, client_id, topic in tries:
        context = _context(fleet.pki_dir, "cam-0001")
        with MqttProbe(broker.host, broker.tls_port, client_id=client_id, context=context) as p:
            assert p.connect().ok
            answer = p.publish(topic, b"{}")
            seen.answers[name] = (answer.ok, answer.code)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Fleet, FleetReport, Seen]:
    seen = Seen()

    def hook(phase: str, fleet: Fleet) -> None:
        seen.phases.append(phase)
        if phase == "connect":  # the devices exist, none is connected yet
            for device in fleet.devices:
                device.attach(Recorder(device.thing, seen))
        if phase == "report":
            _probe(fleet, seen)

    fleet = Fleet(PLAN, tmp_path_factory.mktemp("fleet"), on_phase=[hook])
    return fleet, fleet.run(), seen


@pytest.mark.broker
def test_every_event_of_every_device_arrives_through_an_outage(
    run: tuple[Fleet, FleetReport, Seen],
) -> None:
    _fleet, report, seen = run
    assert report.complete
    assert report.settled  # every device's outbox empty: the PUBACKs came back too
    assert report.connected == PLAN.devices
    assert [t.thing for t in report.devices] == list(PLAN.things)
    for tally in report.devices:
        assert (tally.raised, tally.delivered, tally.missing) == (PLAN.events, PLAN.events, 0)
    # A device that never lost its link never sends anything twice; the cut one may (a batch
    # whose PUBACK the reset swallowed), and the cloud counts those copies apart.
    assert all(t.duplicates == 0 for t in report.devices if t.thing != OUTAGE.thing)
    assert report.totals["delivered"] == PLAN.devices * PLAN.events
    assert seen.phases == list(PHASES)


@pytest.mark.broker
def test_components_attached_to_devices_start_and_stop_with_them(
    run: tuple[Fleet, FleetReport, Seen],
) -> None:
    _, _, seen = run
    things = list(PLAN.things)
    assert seen.calls == [("start", t) for t in things] + [("stop", t) for t in things[::-1]]


@pytest.mark.broker
def test_the_outage_really_cut_that_device_only(run: tuple[Fleet, FleetReport, Seen]) -> None:
    fleet, report, _ = run
    cut = next(d for d in fleet.devices if d.thing == OUTAGE.thing)
    assert cut.proxy is not None
    assert cut.proxy.connections >= 2
    assert all(d.proxy is None for d in fleet.devices if d is not cut)
    lag = {t.thing: t.lag_max_s for t in report.devices}
    # events raised while it was offline waited for the link; the others' never did
    assert lag[OUTAGE.thing] >= OUTAGE.duration_s / 2
    assert lag[OUTAGE.thing] > max(v for k, v in lag.items() if k != OUTAGE.thing)
    assert report.devices[1].outages == (OUTAGE.text,)


@pytest.mark.broker
def test_a_device_cannot_publish_as_another(run: tuple[Fleet, FleetReport, Seen]) -> None:
    _, _, seen = run
    assert seen.answers["own"][0] is True  # the control: its own topic is open
    assert seen.answers["other"] == (False, NOT_AUTHORIZED)
    assert seen.answers["impostor"] == (False, NOT_AUTHORIZED)


@pytest.mark.broker
def test_the_broker_rate_comes_from_sys(run: tuple[Fleet, FleetReport, Seen]) -> None:
    _, report, _ = run
    broker = report.broker
    assert broker.samples >= 2
    assert broker.window_s > 0
    # each batch is one PUBLISH received, and one sent on to the cloud consumer
    assert broker.publishes_received_per_s > 0
    assert broker.clients_peak >= PLAN.devices


@pytest.mark.broker
def test_json_output_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fleet", "--devices", "2", "--rate", "20", "--events", "10", "--json"]
    code = simulator_main([*argv, "--workdir", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    keys = {"devices", "totals", "broker", "phases_s", "connected", "settled", "complete", "plan"}
    assert set(doc) == keys
    assert doc["settled"] is True
    assert [d["thing"] for d in doc["devices"]] == ["cam-0001", "cam-0002"]
    assert {"raised", "delivered", "duplicates", "missing", "lag_p99_s"} <= set(doc["devices"][0])
    assert doc["totals"]["raised"] == doc["totals"]["delivered"] == 20
    assert doc["complete"] is True
    assert "publishes_received_per_s" in doc["broker"]


# -- no broker: the plan, the ledger, the command line ------------------------------------------


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("cam-0003", "THING:START:DURATION"),
        ("cam-0003:5", "THING:START:DURATION"),
        ("cam-0003:five:10", "must be numbers"),
        ("cam-0003:5:0", "DURATION > 0"),
        ("cam-0003:-1:10", "START must be >= 0"),
        ("camera-3:5:10", "not a fleet device name"),
    ],
)
def test_a_bad_outage_is_refused_with_its_reason(text: str, wanted: str) -> None:
    with pytest.raises(ValueError, match=wanted):
        OutageSpec.parse(text)


def test_an_outage_parses_into_a_fault_script() -> None:
    first, second = OutageSpec.parse("cam-0003:12:4"), OutageSpec.parse("cam-0003:5:2.5")
    assert (first.thing, first.start_s, first.duration_s) == ("cam-0003", 12.0, 4.0)
    assert outage_script([first, second]) == "wait:5,down,wait:2.5,up,wait:4.5,down,wait:4,up"


def test_the_plan_refuses_outages_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="has 3 device"):
        FleetPlan(3, 5.0, 10, outages=(OutageSpec.parse("cam-0004:1:1"),))
    with pytest.raises(ValueError, match="overlap"):
        FleetPlan(3, 5.0, 10, outages=(OutageSpec("cam-0001", 1, 5), OutageSpec("cam-0001", 3, 1)))
    with pytest.raises(ValueError, match="--devices"):
        FleetPlan(0, 5.0, 10)
    with pytest.raises(ValueError, match="--rate"):
        FleetPlan(2, 0.0, 10)


def test_random_outages_are_reproducible_and_inside_the_run() -> None:
    things = FleetPlan(20, 5.0, 100).things
    drawn = random_outages(things, 20.0, seed=7)
    assert drawn == random_outages(things, 20.0, seed=7)
    assert drawn != random_outages(things, 20.0, seed=8)
    assert len(drawn) == 5
    assert len({o.thing for o in drawn}) == 5
    assert all(0 <= o.start_s <= 12.0 and 1.0 <= o.duration_s <= 8.0 for o in drawn)
    FleetPlan(20, 5.0, 100, outages=drawn)  # a valid plan


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["fleet", *argv])


def test_the_command_line_builds_the_plan() -> None:
    outages = ["--outage", "cam-0003:1:2", "--outage", "cam-0005:0:1"]
    plan = plan_from_args(_args("--devices", "5", "--rate", "2", "--events", "8", *outages))
    assert (plan.devices, plan.rate, plan.events, plan.generation_s) == (5, 2.0, 8, 4.0)
    assert [o.text for o in plan.outages] == ["cam-0003:1:2", "cam-0005:0:1"]
    drawn = plan_from_args(_args("--devices", "8", "--outages", "random", "--seed", "3"))
    assert len(drawn.outages) == 2


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["--outage", "cam-0003"], "THING:START:DURATION"),
        (["--devices", "2", "--outage", "cam-0003:1:1"], "has 2 device"),
        (["--outage", "cam-0001:1:1", "--outages", "random"], "not both"),
        (["--devices", "0"], "--devices must be"),
    ],
)
def test_the_command_rejects_a_bad_plan_with_one_line(
    argv: list[str], wanted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without the broker marker no Mosquitto can start: exit 2 means nothing was tried.
    assert simulator_main(["fleet", *argv]) == 2
    err = capsys.readouterr().err
    assert wanted in err
    assert err.startswith("fleet: ")
    assert err.count("\n") == 1


def test_the_ledger_counts_copies_and_missing_per_device() -> None:
    ledger = Ledger()

    def batch(device: str, *ids: str) -> dict[str, object]:
        events = [{"id": i, "seq": n, "device": device, "ts": format_utc(100.0)} for n, i in
                  enumerate(ids, 1)]  # fmt: skip
        return {"device": device, "events": events}

    ledger.feed(batch("cam-0001", "a", "b"), received_wall=101.0)
    ledger.feed(batch("cam-0001", "b", "c"), received_wall=103.0)
    ledger.feed(batch("cam-0002", "x"), received_wall=100.5)
    one = ledger.tally("cam-0001", ["a", "b", "c", "d"])
    assert (one.raised, one.delivered, one.duplicates, one.missing) == (4, 3, 1, 1)
    assert (one.lag_p50_s, one.lag_max_s) == (1.0, 3.0)  # b counted at its first receipt
    two = ledger.tally("cam-0002", ["x"])
    assert (two.delivered, two.duplicates, two.missing, two.lag_max_s) == (1, 0, 0, 0.5)
    assert ledger.holds("cam-0002", ["x"])
    assert not ledger.holds("cam-0001", ["d"])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([], 99) == 0.0


@pytest.mark.broker
@pytest.mark.slow
def test_replay_devices_run_the_daemon_and_deliver_every_seq(
    tmp_path: Path, default_model: Path, scene: tuple[Path, object]
) -> None:
    clip, _ = scene
    outage = OutageSpec("cam-0002", 1.0, 2.0)
    plan = FleetPlan(devices=2, rate=1.0, events=1, outages=(outage,), replay=clip)
    report = Fleet(plan, tmp_path, model=default_model).run()
    assert report.complete
    for tally in report.devices:
        # every seq the daemon stored, from its own pipeline on the clip, arrived
        assert tally.raised > 0
        assert (tally.delivered, tally.missing) == (tally.raised, 0)
    assert report.devices[1].outages == (outage.text,)


def test_replay_is_for_a_few_devices_and_an_existing_clip(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match="no such file"):
        FleetPlan(2, 1.0, 1, replay=clip)
    clip.write_bytes(b"")
    with pytest.raises(ValueError, match="at most 8 devices"):
        FleetPlan(9, 1.0, 1, replay=clip)


@pytest.mark.broker
def test_a_device_offline_past_the_drain_timeout_is_reported_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fleet", "--devices", "2", "--rate", "10", "--events", "10", "--json"]
    argv += ["--outage", "cam-0002:0:600", "--drain-timeout", "2", "--workdir", str(tmp_path)]
    code = simulator_main(argv)
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["complete"] is False
    missing = {d["thing"]: (d["raised"], d["missing"]) for d in doc["devices"]}
    assert missing == {"cam-0001": (10, 0), "cam-0002": (10, 10)}
    assert doc["totals"]["missing"] == 10


def test_a_device_counted_by_seq_is_missing_what_never_arrived() -> None:
    ledger = Ledger()
    events = [{"id": f"e{q}", "seq": q, "device": "cam-0001", "ts": format_utc(10.0)}
              for q in (1, 2, 4, 4)]  # fmt: skip
    ledger.feed({"device": "cam-0001", "events": events}, received_wall=12.0)
    assert ledger.holds_seqs("cam-0001", 2)
    assert not ledger.holds_seqs("cam-0001", 4)
    tally = ledger.tally_seqs("cam-0001", 4)
    assert (tally.raised, tally.delivered, tally.duplicates, tally.missing) == (4, 3, 1, 1)
    assert tally.lag_max_s == 2.0


def test_the_broker_rate_is_the_counter_s_slope_over_the_window() -> None:
    load = BrokerLoad("127.0.0.1", 1)  # never started: fed by hand below

    def at(when: float, topic: str, value: float) -> None:
        load._on_message(None, None, SimpleNamespace(topic=topic, payload=str(value).encode()))  # type: ignore[arg-type]
        samples = load._samples[topic]
        samples[-1] = (when, samples[-1][1])

    for when, count in [(0.0, 100.0), (5.0, 150.0), (9.0, 400.0), (13.0, 500.0), (20.0, 900.0)]:
        at(when, PUBLISH_RECEIVED, count)
    at(9.0, CLIENTS, 7.0)
    summary = load.summary(6.0, 14.0)
    # from the last value at or before the start (t=5: 150) to the last by the end (t=13: 500)
    assert summary.publishes_received_per_s == round(350 / 8, 2)
    assert (summary.window_s, summary.samples, summary.clients_peak) == (8.0, 3, 7)
    load.stop()
