"""Cost of encryption at rest: enqueue rate, drain throughput and bytes per event, side by side.

    python bench/atrest.py [--events 2000] [--rounds 3] [--dir DIR] [--json]

Two outboxes on this disk, one in clear and one encrypted (AES-256-GCM, as with
``encryption.enabled``), get the same realistic events (``bench.drain.realistic_event``: what
the pipeline raises, snapshot reference included). The machine's disk is shared and its fsync
latency drifts by several times within a minute, so the two are measured *paired*: each step
alternates between them (which one goes first alternates too) and only the time inside the
measured call is added to its side. Per round:

* enqueue ``--events`` events into each (synchronous=FULL, one commit per event as in
  production), alternately, timing each ``enqueue``;
* close both, weigh their bodies and files (SQLite pages: the 36 bytes a sealed body adds may
  fit in a page's slack), copy both;
* drain both at once, each through its own ``DrainLoop`` and ``InMemoryTransport`` under AWS
  IoT Core's caps (100 publishes/s, 512 KB/s), window 100: what a device can send. With a few
  thousand events the first second's 512 KB is a good part of the run, so this exceeds the
  steady ~1,000 events/s of ``bench/drain.py``; compare the two columns, not with that;
* drain the copies without caps or transport, ``lease`` + ``ack`` of one batch (<= 500 events,
  <= 128 KB) from each in turn: the drain thread's own cost, the headroom under the caps.

Also the CPU cost of sealing and opening one body alone, and how long a sealed clip takes to
write (8 s at 5 fps, 640x360, from submit to done): the upper bound of the window in which its
clear mp4 exists as a temporary file. Medians of the rounds are shown.
On a disk, each commit's fsync (milliseconds) dwarfs the cipher (microseconds); ``--dir
/dev/shm`` (RAM, fsync costs nothing) shows what the cipher itself costs the store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODES = ("plain", "encrypted")
KEY = bytes(range(32))


def _open(path: Path, sealer: Any) -> Any:
    from edge_app.clock import SystemClock
    from edge_app.outbox import Outbox
    from edge_app.uplink import encode_batch

    return Outbox(
        path, clock=SystemClock(), device="bench-atrest", max_bytes=1 << 30, max_age_s=1e9,
        encoder=encode_batch, sealer=sealer,
    )  # fmt: skip


def _paired(steps: dict[str, Callable[[], bool]]) -> dict[str, float]:
    """Run each side's step in turn (alternating who goes first) until every one returns
    False; the seconds spent inside each side's calls."""
    spent = dict.fromkeys(steps, 0.0)
    live = list(steps)
    turn = 0
    while live:
        order = live if turn % 2 == 0 else live[::-1]
        turn += 1
        for mode in order:
            start = time.perf_counter()
            more = steps[mode]()
            spent[mode] += time.perf_counter() - start
            if not more:
                live.remove(mode)
    return spent


def enqueue(paths: dict[str, Path], sealers: dict[str, Any], events: int) -> dict[str, float]:
    """Events/s of each side's ``enqueue`` (paired, one event each in turn)."""
    from bench.drain import realistic_event
    from edge_app.clock import SystemClock

    clock = SystemClock()
    boxes = {mode: _open(path, sealers[mode]) for mode, path in paths.items()}
    queue = {mode: [realistic_event(i, clock) for i in range(events)] for mode in paths}
    try:

        def step(mode: str) -> Callable[[], bool]:
            def one() -> bool:
                boxes[mode].enqueue(queue[mode].pop())
                return bool(queue[mode])

            return one

        spent = _paired({mode: step(mode) for mode in paths})
    finally:
        for box in boxes.values():
            box.close()
    return {mode: events / seconds for mode, seconds in spent.items()}


def capped_drain(paths: dict[str, Path], sealers: dict[str, Any], events: int) -> dict[str, float]:
    """Events/s of a ``DrainLoop`` per side, both running at once, each under IoT Core's caps."""
    from edge_app.clock import SystemClock
    from edge_app.uplink import DrainLoop, InMemoryTransport

    rates: dict[str, float] = {}

    def drain(mode: str) -> None:
        transport = InMemoryTransport()
        transport.connect()
        with _open(paths[mode], sealers[mode]) as box:
            loop = DrainLoop(
                box, transport, topic="edge-app/bench-atrest/events", clock=SystemClock(),
                stop=threading.Event(), max_wait_s=0.0, window=100,
            )  # fmt: skip
            start = time.perf_counter()
            emptied = loop.flush(120.0)
            seconds = time.perf_counter() - start
        if emptied and loop.events_sent == events:
            rates[mode] = events / seconds

    threads = [threading.Thread(target=drain, args=(mode,)) for mode in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(rates) == set(paths), f"a drain did not deliver all {events} events: {rates}"
    return rates


def store_drain(paths: dict[str, Path], sealers: dict[str, Any], events: int) -> dict[str, float]:
    """Events/s of ``lease`` + ``ack`` alone, one batch from each side in turn."""
    boxes = {mode: _open(path, sealers[mode]) for mode, path in paths.items()}
    sent = dict.fromkeys(paths, 0)
    try:

        def step(mode: str) -> Callable[[], bool]:
            def one() -> bool:
                batch = boxes[mode].lease(500, 131_072)
                if batch is None:
                    return False
                boxes[mode].ack(batch)
                sent[mode] += len(batch)
                return True

            return one

        spent = _paired({mode: step(mode) for mode in paths})
    finally:
        for box in boxes.values():
            box.close()
    assert all(n == events for n in sent.values()), sent
    return {mode: events / seconds for mode, seconds in spent.items()}


def seal_open_us(body: bytes, n: int = 20_000) -> tuple[float, float]:
    """Microseconds to seal, and to open, one ``body`` (CPU only)."""
    from edge_app.atrest import Sealer

    sealer = Sealer(KEY)
    start = time.perf_counter()
    sealed = [sealer.seal(body, b"edge-app/event\0id") for _ in range(n)]
    sealing = time.perf_counter() - start
    start = time.perf_counter()
    for item in sealed:
        sealer.open(item, b"edge-app/event\0id")
    return sealing / n * 1e6, (time.perf_counter() - start) / n * 1e6


def clip_write_ms(work: Path, scratch: Path | None, n: int = 5) -> float:
    """Median milliseconds from handing a finished 40-frame clip to a sealing ``ClipWriter``
    until it is stored (encode to a clear temporary file in ``scratch``, seal, delete)."""
    import numpy as np

    from edge_app.actions import ClipRecorder, ClipWriter
    from edge_app.atrest import Sealer
    from edge_app.domain import Frame

    writer = ClipWriter(sealer=Sealer(KEY), scratch=scratch)
    times = []
    try:
        for k in range(n):
            recorder = ClipRecorder(work / "clips", writer, pre_s=0.0, post_s=8.0, fps=5.0)
            clip = recorder.begin(f"clip{k}.mp4", 0.0)
            ramp = np.tile(np.arange(640, dtype=np.uint8)[None, :, None], (360, 1, 3))
            for i in range(41):  # a box walking over a gradient: compresses like a scene
                image = ramp.copy()
                image[100:260, 10 * i : 10 * i + 80] = (40, 80, 200)
                if i == 40:
                    start = time.perf_counter()  # this frame ends the clip and submits it
                recorder.push(Frame("bench", i, i / 5, 1.79e9 + i / 5, image))
            clip.done.wait(60)
            times.append(time.perf_counter() - start)
    finally:
        writer.close()
    assert writer.written == n, writer.written
    return statistics.median(times) * 1000


def one_round(work: Path, events: int) -> dict[str, dict[str, float]]:
    from edge_app.atrest import Sealer

    sealers = {"plain": None, "encrypted": Sealer(KEY)}
    for stale in work.iterdir():
        stale.unlink()
    paths = {mode: work / f"{mode}.db" for mode in MODES}
    copies = {mode: work / f"{mode}-copy.db" for mode in MODES}
    out: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    for mode, rate in enqueue(paths, sealers, events).items():
        out[mode]["enqueue_events_per_s"] = rate
    for mode, path in paths.items():
        with sqlite3.connect(path) as conn:
            body, clear = conn.execute(
                "SELECT SUM(LENGTH(body)), SUM(bytes) FROM events"
            ).fetchone()
        out[mode]["body_bytes_per_event"] = body / events
        out[mode]["file_bytes_per_event"] = path.stat().st_size / events  # WAL checkpointed
        out[mode]["clear_bytes_per_event"] = clear / events
        shutil.copyfile(path, copies[mode])
    for mode, rate in capped_drain(paths, sealers, events).items():
        out[mode]["capped_drain_events_per_s"] = rate
    for mode, rate in store_drain(copies, sealers, events).items():
        out[mode]["store_drain_events_per_s"] = rate
    return out


def run(events: int, rounds: int, work: Path) -> dict[str, Any]:
    runs = [one_round(work, events) for _ in range(rounds)]
    result: dict[str, Any] = {
        mode: {key: statistics.median(r[mode][key] for r in runs) for key in runs[0][mode]}
        for mode in MODES
    }
    body = b"x" * round(result["plain"]["clear_bytes_per_event"])
    result["seal_us"], result["open_us"] = seal_open_us(body)
    result["clip_write_ms"] = clip_write_ms(work, None)
    return result


ROWS = (
    ("enqueue (synchronous=FULL), events/s", "enqueue_events_per_s"),
    ("drain, IoT Core caps (DrainLoop, InMemoryTransport), events/s", "capped_drain_events_per_s"),
    ("drain without caps (lease + ack), events/s", "store_drain_events_per_s"),
    ("stored body bytes per event (LENGTH(body))", "body_bytes_per_event"),
    ("file bytes per event (file size / events)", "file_bytes_per_event"),
    ("clear JSON bytes per event (what budgets count)", "clear_bytes_per_event"),
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where the outboxes go (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-atrest-", dir=args.dir) as tmp:
        result = run(args.events, args.rounds, Path(tmp))
    if args.json:
        print(json.dumps({**result, "events": args.events, "rounds": args.rounds}))
        return 0
    where = args.dir or Path(tempfile.gettempdir())
    print(f"{args.events} events per side in {where}, median of {args.rounds} rounds, paired")
    print(f"| measure | {' | '.join(MODES)} | encrypted / plain |")
    print("|---|---|---|---|")
    for label, key in ROWS:
        plain, sealed = result["plain"][key], result["encrypted"][key]
        print(f"| {label} | {plain:,.0f} | {sealed:,.0f} | {sealed / plain:.2f} |")
    print(
        f"seal / open one {round(result['plain']['clear_bytes_per_event'])}-byte body: "
        f"{result['seal_us']:.1f} / {result['open_us']:.1f} us (CPU only)"
    )
    print(
        f"sealed clip (8 s, 640x360, 5 fps) written in {result['clip_write_ms']:.0f} ms: the "
        "clear temporary mp4 exists no longer than that"
    )
    print(f"(ran {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
