"""What a fleet simulation runs: its devices, their event load and their scripted outages.

Pure values, parsed and checked before anything starts (``python -m simulator fleet`` turns a
``ValueError`` from here into a one-line error and exit code 2):

* devices are named ``cam-0001``, ``cam-0002``, ... (``thing_names``): each is an IoT thing
  name, its certificate's CN and its MQTT client id;
* ``OutageSpec.parse("cam-0003:5:10")``: that device is offline from 5 s after the run starts,
  for 10 s (its link is cut, the others keep theirs);
* ``random_outages(things, seconds, seed)``: a reproducible set of such outages, a quarter of
  the fleet (at least one device) offline once each within the generation window.
"""

from __future__ import annotations

__all__ = [
    "MAX_DEVICES",
    "MAX_REPLAY_DEVICES",
    "FleetPlan",
    "OutageSpec",
    "outage_script",
    "random_outages",
    "thing_names",
]

import itertools
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_DEVICES = 500
"""Most devices one run simulates (each has threads and sockets in this one process)."""
MAX_REPLAY_DEVICES = 8
"""Most devices of a ``--replay`` run (each runs the whole daemon with its own detector)."""
_THING_RE = re.compile(r"cam-[0-9]{4}")


def thing_names(count: int) -> tuple[str, ...]:
    """``cam-0001`` .. ``cam-{count:04d}``; ``ValueError`` outside 1..``MAX_DEVICES``."""
    if not 1 <= count <= MAX_DEVICES:
        raise ValueError(f"--devices must be 1..{MAX_DEVICES}, got {count}")
    return tuple(f"cam-{i:04d}" for i in range(1, count + 1))


@dataclass(frozen=True, slots=True)
class OutageSpec:
    """Device ``thing`` is offline from ``start_s`` (seconds after the run starts) for
    ``duration_s`` seconds."""

    thing: str
    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not _THING_RE.fullmatch(self.thing):
            raise ValueError(
                f"outage {self.text!r}: {self.thing!r} is not a fleet device name (cam-0001, ...)"
            )
        if not self.start_s >= 0 or not self.duration_s > 0:
            raise ValueError(f"outage {self.text!r}: START must be >= 0 and DURATION > 0 seconds")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def text(self) -> str:
        """The ``THING:START:DURATION`` form."""
        return f"{self.thing}:{self.start_s:g}:{self.duration_s:g}"

    @classmethod
    def parse(cls, text: str) -> OutageSpec:
        """Parse ``THING:START:DURATION`` (seconds); ``ValueError`` saying what is wrong."""
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise ValueError(
                f"outage {text!r}: use THING:START:DURATION, e.g. cam-0003:5:10 (offline from "
                "t=5 s for 10 s)"
            )
        thing, start, duration = parts
        try:
            start_s, duration_s = float(start), float(duration)
        except ValueError:
            raise ValueError(
                f"outage {text!r}: START and DURATION must be numbers of seconds, e.g. "
                "cam-0003:5:10"
            ) from None
        return cls(thing, start_s, duration_s)


def outage_script(outages: Iterable[OutageSpec]) -> str:
    """The ``simulator.outage`` fault script of one device's ``outages`` (sorted, not
    overlapping): ``wait:START,down,wait:DURATION,up,...``."""
    steps: list[str] = []
    at = 0.0
    for outage in sorted(outages, key=lambda o: o.start_s):
        steps += [f"wait:{outage.start_s - at:g}", "down", f"wait:{outage.duration_s:g}", "up"]
        at = outage.end_s
    return ",".join(steps)


def random_outages(things: Sequence[str], seconds: float, seed: int) -> tuple[OutageSpec, ...]:
    """A quarter of ``things`` (at least one), each offline once, starting within the first
    60 % of ``seconds`` (the generation window) for 1 s up to 40 % of it (at most 30 s);
    the same ``seed`` gives the same outages."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    chosen = sorted(rng.sample(list(things), max(1, round(len(things) / 4))))
    longest = max(1.0, min(30.0, 0.4 * seconds))
    return tuple(
        OutageSpec(
            thing,
            round(rng.uniform(0.0, 0.6 * seconds), 1),
            round(rng.uniform(1.0, longest), 1),
        )
        for thing in chosen
    )


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """A whole run: ``devices`` devices each raising ``events`` events at ``rate`` events/s,
    the ``outages``, and ``drain_timeout_s``, how long after the last event is raised the run
    waits for delivery to complete before it reports what is missing."""

    devices: int
    rate: float
    events: int
    outages: tuple[OutageSpec, ...] = ()
    drain_timeout_s: float = 60.0
    replay: Path | None = None
    """A clip each device's daemon replays instead of generated events (``rate``/``events``
    then unused); at most ``MAX_REPLAY_DEVICES`` devices."""

    def __post_init__(self) -> None:
        names = set(thing_names(self.devices))
        if not 0 < self.rate <= 1000:
            raise ValueError(f"--rate must be > 0 and <= 1000 events/s per device, got {self.rate}")
        if self.events < 1:
            raise ValueError(f"--events must be >= 1 per device, got {self.events}")
        if self.replay is not None:
            if self.devices > MAX_REPLAY_DEVICES:
                raise ValueError(
                    f"--replay runs the daemon and a detector per device: use at most "
                    f"{MAX_REPLAY_DEVICES} devices, got {self.devices}"
                )
            if not self.replay.is_file():
                raise ValueError(f"--replay {self.replay}: no such file; give a video clip")
        if not self.drain_timeout_s > 0:
            raise ValueError(f"--drain-timeout must be > 0 seconds, got {self.drain_timeout_s}")
        for outage in self.outages:
            if outage.thing not in names:
                raise ValueError(
                    f"outage {outage.text!r}: the fleet has {self.devices} device(s), "
                    f"cam-0001..cam-{self.devices:04d}"
                )
        for thing in names:
            mine = sorted((o for o in self.outages if o.thing == thing), key=lambda o: o.start_s)
            for before, after in itertools.pairwise(mine):
                if after.start_s < before.end_s:
                    raise ValueError(
                        f"outages {before.text!r} and {after.text!r} overlap: give each device "
                        "one outage at a time"
                    )

    @property
    def things(self) -> tuple[str, ...]:
        return thing_names(self.devices)

    @property
    def generation_s(self) -> float:
        """Seconds each device takes to raise its events."""
        return self.events / self.rate

    def outages_of(self, thing: str) -> tuple[OutageSpec, ...]:
        return tuple(sorted((o for o in self.outages if o.thing == thing), key=lambda o: o.start_s))
