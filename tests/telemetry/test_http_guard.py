"""The health HTTP endpoint against hostile clients, over real sockets: idle connections,
slowloris, oversized requests, and a LAN-bound endpoint with a bearer token.

Timeouts are configured short (a ``FakeClock`` cannot drive socket timeouts) and every wait is
on a condition, bounded by ``wait_until``; the only pacing is the slowloris client's own.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.telemetry import BearerToken, HealthMonitor, HealthServer, Registry
from edge_app.telemetry.httpserver import MAX_REQUEST_BYTES
from tests.factories import wait_until

TOKEN = "k5Qy7-Vf1rZs0_pLx9aWc3NmE2uTbHdG"
CLIENT_THREAD = "health-http-client"


def client_threads() -> int:
    return sum(t.name == CLIENT_THREAD for t in threading.enumerate())


@contextmanager
def serving(
    host: str = "127.0.0.1",
    *,
    token: BearerToken | None = None,
    timeout_s: float = 10.0,
    max_connections: int = 8,
    status: Callable[[], dict[str, object]] = lambda: {"device": "guard-cam"},
) -> Iterator[HealthServer]:
    health = HealthMonitor(
        clock=FakeClock(),
        cameras=dict,
        outbox=lambda: None,
        outbox_max_bytes=0,
        connected=None,
        disk_path=Path("/"),
        disk_usage=lambda _: (100, 50, 50),
    )
    server = HealthServer(
        host,
        0,
        registry=Registry({"device": "guard-cam"}),
        health=health,
        status=status,
        token=token,
        timeout_s=timeout_s,
        max_connections=max_connections,
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


def get(
    host: str, port: int, path: str = "/healthz", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset), reading past any 503 answer.
    Never waits: the socket is made non-blocking."""
    sock.setblocking(False)
    try:
        while sock.recv(4096, socket.MSG_DONTWAIT):
            pass
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    return True


@pytest.mark.slow
def test_200_idle_connections_hold_bounded_threads_and_are_cut() -> None:
    before = threading.active_count()
    peak = 0
    with serving(timeout_s=1.0, max_connections=4) as server, ExitStack() as held:
        idle = []
        for _ in range(200):
            sock = held.enter_context(socket.create_connection(("127.0.0.1", server.port), 5))
            idle.append(sock)
            peak = max(peak, client_threads())
        # a probe still gets its answer while the 200 are held open
        code, _, body = get("127.0.0.1", server.port)
        assert (code, '"state": "ok"' in body) == (200, True)
        peak = max(peak, client_threads())
        assert peak <= 4
        assert threading.active_count() <= before + 4 + 1  # + the accepting thread
        # beyond the bound they are displaced at once; the last ones at their deadline
        assert wait_until(lambda: all(closed_by_server(s) for s in idle))
        assert wait_until(lambda: client_threads() == 0)


@pytest.mark.slow
def test_a_slowloris_client_is_cut_at_the_deadline() -> None:
    cut = threading.Event()
    stop = threading.Event()
    sent: list[int] = []
    with serving(timeout_s=1.0) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), 5)
        started = time.monotonic()

        def trickle() -> None:
            try:
                sock.sendall(b"GET /healthz HTTP/1.0\r\nX-Slow: ")
                while not stop.wait(0.2):  # the attack's pace: a byte every 0.2 s
                    if closed_by_server(sock):
                        break
                    sock.sendall(b"a")
                    sent.append(1)
            except OSError:
                pass  # reset while sending: cut as well
            cut.set()

        worker = threading.Thread(target=trickle)
        worker.start()
        try:
            assert wait_until(cut.is_set)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            worker.join()
            sock.close()
    assert elapsed >= 0.9  # it was the request deadline, not something else
    assert len(sent) < 100  # never allowed to finish its headers


def test_an_oversized_request_is_refused_with_431() -> None:
    with serving() as server:
        code, _, _ = get("127.0.0.1", server.port, headers={"X-Big": "a" * MAX_REQUEST_BYTES})
        assert code == 431
        assert get("127.0.0.1", server.port)[0] == 200


def test_when_every_slot_is_answering_a_new_connection_gets_503() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def status() -> dict[str, object]:
        entered.release()
        release.wait(30)
        return {}

    results: list[int] = []
    with serving(max_connections=2, status=status) as server:
        workers = [
            threading.Thread(
                target=lambda: results.append(get("127.0.0.1", server.port, "/status")[0])
            )
            for _ in range(2)
        ]
        try:
            for worker in workers:
                worker.start()
            assert entered.acquire(timeout=10)
            assert entered.acquire(timeout=10)  # both slots are busy answering
            with socket.create_connection(("127.0.0.1", server.port), 5) as extra:
                extra.settimeout(5)
                assert extra.recv(64).startswith(b"HTTP/1.0 503")
        finally:
            release.set()
            for worker in workers:
                worker.join()
    assert results == [200, 200]


def lan_address() -> str:
    """This machine's non-loopback IPv4 address if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            address: str = probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return address


def test_a_lan_bound_endpoint_serves_only_requests_with_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Z" * len(TOKEN)
    with serving("0.0.0.0", token=BearerToken(TOKEN)) as server:
        host, port = lan_address(), server.port
        for path in ("/healthz", "/metrics", "/status", "/nothing-here"):
            code, headers, body = get(host, port, path)
            assert code == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in body
        assert get(host, port, headers={"Authorization": f"Bearer {wrong}"})[0] == 401
        assert get(host, port, headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
        assert get(host, port, headers={"Authorization": f"Bearer {TOKEN}x"})[0] == 401
        for path in ("/healthz", "/metrics", "/status"):
            assert get(host, port, path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert get(host, port, "/nothing-here", {"Authorization": f"bearer {TOKEN}"})[0] == 404
        # the gate comes before method dispatch: an unknown method without the token is a 401
        with socket.create_connection((host, port), 5) as raw:
            raw.sendall(b"POST /status HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            assert raw.recv(64).startswith(b"HTTP/1.0 401")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("exposed to the network" in w and "0.0.0.0" in w for w in warnings)
    assert TOKEN not in caplog.text
    assert wrong not in caplog.text


def test_loopback_may_require_the_token_too() -> None:
    with serving(token=BearerToken(TOKEN)) as server:
        assert get("127.0.0.1", server.port)[0] == 401
        assert get("127.0.0.1", server.port, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_loopback_without_a_token_stays_open_and_quiet(caplog: pytest.LogCaptureFixture) -> None:
    with serving() as server:
        assert get("127.0.0.1", server.port)[0] == 200
    assert "exposed" not in caplog.text


def test_a_non_loopback_endpoint_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a token"), serving("0.0.0.0"):
        pass


def test_a_token_never_shows_in_its_repr_and_is_checked_for_strength() -> None:
    token = BearerToken(TOKEN)
    assert TOKEN not in repr(token)
    assert token.matches(f"Bearer {TOKEN}")
    assert not token.matches(None)
    assert not token.matches(TOKEN)
    with pytest.raises(ValueError, match="at least 16") as info:
        BearerToken("short-secret")
    assert "short-secret" not in str(info.value)
    with pytest.raises(ValueError):
        BearerToken("has spaces in it, which no header can carry")
