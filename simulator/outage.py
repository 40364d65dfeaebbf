"""Scripted faults between the appliance and its broker: ``python -m simulator outage``.

A script is a comma-separated list of steps, each ``ACTION[:ARG...]``, run in order::

    up                 relay normally (full speed, no black hole)
    down               refuse connections and reset the open ones
    cut                reset (RST) the open connections, keep accepting
    blackhole          accept and keep connections, swallow every byte
    slow:BPS:LAT       pace each direction to BPS bytes/s, LAT seconds latency per chunk
    restart            restart the broker (tests: ``Mosquitto.restart``; CLI: --restart-cmd)
    wait:S             hold the current state for S seconds

Example: ``down,wait:30,up,wait:5,cut,wait:2,blackhole,wait:20,up,slow:20000:0.05,wait:10,up``.
The same ``FaultScript`` runs from tests (``run(proxy, restart=broker.restart)``).
"""

from __future__ import annotations

__all__ = ["FaultScript", "FaultStep", "main", "register"]

import argparse
import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simulator.proxy import TcpProxy

log = logging.getLogger(__name__)

_ARITY = {"up": 0, "down": 0, "cut": 0, "blackhole": 0, "restart": 0, "slow": 2, "wait": 1}


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One step of a script: ``action`` with numeric ``args`` (see the module docstring)."""

    action: str
    args: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class FaultScript:
    """An ordered list of fault steps."""

    steps: tuple[FaultStep, ...]

    @classmethod
    def parse(cls, text: str) -> FaultScript:
        """Parse ``"down,wait:30,up"``; ``ValueError`` saying which step is wrong and why."""
        steps = []
        for raw in (part.strip() for part in text.split(",")):
            if not raw:
                continue
            action, *rest = raw.split(":")
            if action not in _ARITY:
                raise ValueError(
                    f"fault step {raw!r}: unknown action {action!r}; use one of {sorted(_ARITY)}"
                )
            if len(rest) != _ARITY[action]:
                raise ValueError(
                    f"fault step {raw!r}: {action} takes {_ARITY[action]} argument(s), "
                    f"got {len(rest)} (e.g. slow:20000:0.05, wait:5)"
                )
            try:
                args = tuple(float(a) for a in rest)
            except ValueError as exc:
                raise ValueError(f"fault step {raw!r}: arguments must be numbers") from exc
            if any(a < 0 for a in args) or (action == "slow" and args[0] <= 0):
                raise ValueError(f"fault step {raw!r}: arguments must be positive")
            steps.append(FaultStep(action, args))
        return cls(tuple(steps))

    @property
    def duration_s(self) -> float:
        """Seconds the ``wait`` steps add up to."""
        return sum(step.args[0] for step in self.steps if step.action == "wait")

    def run(
        self,
        proxy: TcpProxy,
        *,
        restart: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Apply the steps to ``proxy`` in order on this thread; ``stop`` ends waits early."""
        stop = stop or threading.Event()
        for step in self.steps:
            if stop.is_set():
                return
            log.info("fault step: %s %s", step.action, " ".join(f"{a:g}" for a in step.args))
            if step.action == "wait":
                stop.wait(step.args[0])
            elif step.action == "up":
                proxy.blackhole(False)
                proxy.slow(None)
                proxy.up()
            elif step.action == "down":
                proxy.down()
            elif step.action == "cut":
                proxy.cut()
            elif step.action == "blackhole":
                proxy.up()
                proxy.blackhole(True)
            elif step.action == "slow":
                proxy.up()
                proxy.slow(step.args[0], step.args[1])
            elif step.action == "restart":
                if restart is None:
                    raise ValueError("fault step restart: no way to restart the broker given")
                restart()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "outage",
        help="relay appliance <-> broker through a scripted fault injector",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--listen", type=int, required=True, help="local port to listen on")
    parser.add_argument("--target", default="127.0.0.1:1883", help="broker HOST:PORT")
    parser.add_argument("--script", default="up", help="fault script (see above)")
    parser.add_argument("--restart-cmd", help="shell command run by the restart step")
    parser.add_argument(
        "--hold", action="store_true", help="keep relaying after the script until Ctrl-C"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        script = FaultScript.parse(args.script)
        host, _, port = args.target.rpartition(":")
        target = (host or "127.0.0.1", int(port))
    except ValueError as exc:
        print(f"outage: {exc}")
        return 2
    restart: Callable[[], None] | None = None
    if args.restart_cmd:
        command: Sequence[str] = shlex.split(args.restart_cmd)

        def run_restart_cmd() -> None:
            subprocess.run(command, check=True)

        restart = run_restart_cmd

    with TcpProxy(args.listen, *target) as proxy:
        proxy.up()
        try:
            script.run(proxy, restart=restart)
            while args.hold:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    return 0
