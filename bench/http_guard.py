"""The health endpoint under hostile clients: idle connections, slowloris, no token.

    python bench/http_guard.py [--compare TREE] [--idle 200] [--json]

Each run is a child process serving the edge_app of one checkout (``--compare ../main``: that
tree first, as "before") with its default settings, on 127.0.0.1 and then (if the tree knows
tokens) on 0.0.0.0 with one. Figures:

* ``idle_threads``: threads the server runs while ``--idle`` clients hold connections open
  and send nothing;
* ``probe_ms``: one ``GET /healthz`` answered meanwhile (null: not within 10 s);
* ``idle_closed_at_once``: of those connections, how many the server closed at once;
* ``idle_all_closed_s``: seconds until the server had closed all of them (null: not in 30 s);
* ``slowloris_cut_s``: a client sending one header byte a second is cut after this many
  seconds (null: not in 30 s);
* ``no_token_ms_median`` / ``_p99``: 200 requests without the token on the exposed endpoint,
  answered 401 (null: the tree has no tokens).
"""

from __future__ import annotations

import argparse
import inspect
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-k5Qy7Vf1rZs0pLx9aWc3"
WAIT_S = 30.0


def _server(host: str, token: str | None) -> Any:
    from edge_app.clock import FakeClock
    from edge_app.telemetry import HealthMonitor, HealthServer, Registry

    health = HealthMonitor(
        clock=FakeClock(),
        cameras=dict,
        outbox=lambda: None,
        outbox_max_bytes=0,
        connected=None,
        disk_path=Path("/"),
    )
    extra: dict[str, Any] = {}
    if token is not None:
        from edge_app.telemetry import BearerToken

        extra["token"] = BearerToken(token)
    server = HealthServer(host, 0, registry=Registry({}), health=health, status=dict, **extra)
    server.start()
    return server


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    return True


def _until(predicate: Any, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def _probe_ms(port: int, headers: dict[str, str] | None = None) -> tuple[int, float] | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers=headers or {})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            code = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        code = exc.code
    except OSError:
        return None
    return code, (time.perf_counter() - start) * 1000


def child(idle: int) -> dict[str, Any]:
    server = _server("127.0.0.1", None)
    base = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", server.port), 5) for _ in range(idle)]
    time.sleep(0.5)  # let every connection be accepted before counting
    threads = threading.active_count() - base
    probe = _probe_ms(server.port)
    at_once = sum(_closed(s) for s in socks)
    all_closed = _until(lambda: all(_closed(s) for s in socks), WAIT_S)
    for s in socks:
        s.close()

    slow = socket.create_connection(("127.0.0.1", server.port), 5)
    slow.sendall(b"GET /healthz HTTP/1.0\r\nX-Slow: ")
    start, sent = time.monotonic(), 0
    try:
        while time.monotonic() - start < WAIT_S and not _closed(slow):
            if time.monotonic() - start >= sent + 1:
                slow.sendall(b"a")
                sent += 1
            time.sleep(0.01)
    except OSError:
        pass
    cut = time.monotonic() - start
    slow.close()
    server.close()

    from edge_app.telemetry import HealthServer

    median = p99 = None
    if "token" in inspect.signature(HealthServer).parameters:
        exposed = _server("0.0.0.0", TOKEN)
        answers = [_probe_ms(exposed.port) for _ in range(200)]
        assert all(a is not None and a[0] == 401 for a in answers), answers
        times = sorted(a[1] for a in answers if a is not None)
        median, p99 = round(times[100], 2), round(times[197], 2)
        exposed.close()
    return {
        "idle_clients": idle,
        "idle_threads": threads,
        "probe_ms": None if probe is None else round(probe[1], 1),
        "idle_closed_at_once": at_once,
        "idle_all_closed_s": None if all_closed is None else round(all_closed + 0.5, 2),
        "slowloris_cut_s": round(cut, 2) if cut < WAIT_S else None,
        "no_token_ms_median": median,
        "no_token_ms_p99": p99,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--compare", type=Path, metavar="TREE", help="e.g. ../main: before")
    parser.add_argument("--idle", type=int, default=200, help="idle clients held open")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.path.insert(0, str(args.child.resolve()))  # the tree under test
        print(json.dumps(child(args.idle)))
        return 0
    trees = {"before": args.compare, "after": REPO} if args.compare else {"this tree": REPO}
    runs = {}
    for name, tree in trees.items():
        argv = [sys.executable, __file__, f"--child={tree}", f"--idle={args.idle}"]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        runs[name] = json.loads(out.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(runs))
        return 0
    print(f"{'figure':<24}" + "".join(f"{name:>14}" for name in runs))
    for key in next(iter(runs.values())):
        print(f"{key:<24}" + "".join(f"{r[key]!s:>14}" for r in runs.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
