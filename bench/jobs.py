"""IoT Jobs: a config change by job vs by shadow delta, and a rollout to a group of devices.

    python bench/jobs.py [--changes 50] [--devices 20] [--json]

A real Mosquitto on loopback (plain listener), the Jobs and shadow emulators, and devices made
of the real ``JobsAgent``, ``ShadowClient`` and ``ShadowHandler`` over ``MqttTransport``; the
applier only swaps the config snapshot (no model), so the figures are the protocol's and the
decision's, not a model load's.

* **config change**: ``score_threshold`` changes, alternating between the two paths on one
  device: the shadow path (baseline: ``desired`` updated -> the device's ``reported`` accepted
  by the shadow service) and a config job (``create_job`` -> execution SUCCEEDED);
* **rollout**: one model job to a thing group of 1 (baseline) and of ``--devices`` devices
  (updater double: switches at once), ``create_job`` -> job COMPLETED, no rollout limit.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_WAIT_S = 30.0


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class _SwapApplier:
    """The remote ``Applier`` seam without a model: swaps the config snapshot."""

    def __init__(self, config: Any) -> None:
        from edge_app.config import ConfigSnapshot, SnapshotHolder

        self._of = ConfigSnapshot.of
        self.holder = SnapshotHolder(ConfigSnapshot.of(config, "file", None))

    def current(self) -> Any:
        return self.holder.current

    def model(self) -> Any:
        from edge_app.domain import ModelRef

        return ModelRef(self.holder.current.config.detector.model, "0" * 12)

    def apply(self, config: Any, remote_version: int) -> Any:
        snapshot = self._of(config, "remote", remote_version)
        self.holder.swap(snapshot)
        return snapshot


class _InstantUpdater:
    def update(
        self, offer: Any, *, origin: str, progress: Callable[[str], None] | None = None
    ) -> Any:
        from edge_app.domain import ModelRef
        from edge_app.models.offer import UpdateResult, UpdateState

        return UpdateResult(UpdateState.SWITCHED, ModelRef(offer.name, offer.sha256[:12]))


@contextmanager
def _device(port: int, thing: str, workdir: Path, *, shadow: bool) -> Iterator[Any]:
    from edge_app.clock import SystemClock
    from edge_app.config import LastGoodStore, parse_config
    from edge_app.remote import ShadowClient, ShadowHandler
    from edge_app.remote.jobs import JobsAgent
    from edge_app.uplink import MqttTransport

    transport = MqttTransport("127.0.0.1", port, client_id=thing, insecure_plaintext=True)
    stops: list[threading.Event] = []
    threads: list[threading.Thread] = []
    config_job = None
    if shadow:
        data = workdir / thing
        data.mkdir(parents=True, exist_ok=True)
        local = parse_config(
            {
                "device": {"thing_name": thing, "data_dir": str(data)},
                "cameras": [{"name": "cam", "source": {"type": "usb"}}],
                "rules": [{"name": "person", "labels": ["person"]}],
                "uplink": {"host": "127.0.0.1", "port": port, "insecure_plaintext": True},
            }
        )
        handler = ShadowHandler(
            local,
            _SwapApplier(local),
            LastGoodStore(data),
            models=("ssd_mobilenet_v2_coco",),
            clock=SystemClock(),
        )
        stop = threading.Event()
        client = ShadowClient(transport, handler, thing, stop=stop)
        client.attach()
        stops.append(stop)
        threads.append(threading.Thread(target=client.run))

        def config_job(desired: dict[str, Any], origin: str) -> Any:
            return client.local_change(desired, 10.0, origin=origin)

    stop = threading.Event()
    agent = JobsAgent(
        transport,
        thing,
        stop=stop,
        clock=SystemClock(),
        config=config_job,
        models=_InstantUpdater(),
    )
    agent.attach()
    stops.append(stop)
    threads.append(threading.Thread(target=agent.run))
    for thread in threads:
        thread.start()
    try:
        with transport:
            end = time.monotonic() + _WAIT_S
            while not transport.is_connected and time.monotonic() < end:
                time.sleep(0.01)
            yield agent
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join()


def config_changes(port: int, workdir: Path, changes: int) -> dict[str, Any]:
    from simulator.jobs import JobsService
    from simulator.shadow import ShadowService

    thing = "bench-jobs-cfg"
    by_shadow: list[float] = []
    by_job: list[float] = []
    with (
        ShadowService("127.0.0.1", port, client_id="bench-shadow") as shadows,
        JobsService("127.0.0.1", port, client_id="bench-jobs") as jobs,
        _device(port, thing, workdir, shadow=True),
    ):
        for i in range(changes):
            threshold = round(0.3 + (i % 100) / 1000, 3)
            start = time.perf_counter()
            version = shadows.set_desired(thing, {"detector": {"score_threshold": threshold}})

            def shown(doc: dict[str, Any], v: int = version) -> bool:
                config = doc["state"].get("reported", {}).get("config", {})
                return bool(config.get("version") == v)

            if not shadows.wait_for(shown, thing, _WAIT_S):
                raise SystemExit(f"shadow change {i} not reported")
            by_shadow.append((time.perf_counter() - start) * 1000)
            job = f"cfg-{i}"
            desired = {"detector": {"score_threshold": round(threshold + 0.0005, 4)}}
            start = time.perf_counter()
            jobs.create_job(job, {"operation": "config", "desired": desired}, things=[thing])

            def succeeded(j: str = job) -> bool:
                return jobs.status(j, thing) == "SUCCEEDED"

            if not jobs.wait_until(succeeded, _WAIT_S):
                raise SystemExit(f"config job {job} did not succeed: {jobs.executions(job)}")
            by_job.append((time.perf_counter() - start) * 1000)
    return {
        "changes": changes,
        "shadow_median_ms": round(statistics.median(by_shadow), 1),
        "shadow_p99_ms": round(_p99(by_shadow), 1),
        "job_median_ms": round(statistics.median(by_job), 1),
        "job_p99_ms": round(_p99(by_job), 1),
    }


def rollout(port: int, workdir: Path, devices: int, run: int) -> dict[str, Any]:
    from simulator.jobs import JobsService

    things = [f"bench-roll-{run}-{i}" for i in range(devices)]
    with ExitStack() as stack:
        jobs = stack.enter_context(
            JobsService("127.0.0.1", port, client_id=f"bench-roll-svc-{run}")
        )
        for thing in things:
            stack.enter_context(_device(port, thing, workdir, shadow=False))
        jobs.add_group(f"g{run}", things)
        offer = {
            "url": "https://models.example.com/m.tflite",
            "sha256": "ab" * 32,
            "size": 1,
            "name": "m",
            "version": "1",
        }
        start = time.perf_counter()
        jobs.create_job(
            f"roll-{run}", {"operation": "model-update", "model": offer}, groups=[f"g{run}"]
        )
        if not jobs.wait_until(lambda: jobs.job_status(f"roll-{run}") == "COMPLETED", _WAIT_S):
            raise SystemExit(f"rollout to {devices} devices did not complete")
        took = (time.perf_counter() - start) * 1000
    return {"devices": devices, "completed_ms": round(took, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the plaintext warning of each loopback device

    from simulator.broker import Mosquitto

    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "broker") as broker:
            changes = config_changes(broker.port, work, args.changes)
            rollouts = [rollout(broker.port, work, n, i) for i, n in enumerate((1, args.devices))]
    if args.json:
        print(json.dumps({"config": changes, "rollouts": rollouts}))
        return 0
    print(f"config change over Mosquitto on loopback, {changes['changes']} changes per path (ms)")
    print("| path | median | p99 |")
    print("|---|---|---|")
    for label, key in (("shadow delta -> reported (baseline)", "shadow"), ("config job", "job")):
        print(f"| {label} | {changes[key + '_median_ms']} | {changes[key + '_p99_ms']} |")
    print()
    print("model job to a thing group, create_job -> COMPLETED (ms)")
    print("| devices | completed |")
    print("|---|---|")
    for r in rollouts:
        print(f"| {r['devices']} | {r['completed_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
