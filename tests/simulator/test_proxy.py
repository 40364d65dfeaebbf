"""The outage switch: up relays both ways, down refuses and resets, and up works again."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from simulator.broker import free_port
from simulator.proxy import TcpProxy

WAIT_S = 5.0
GREETING = b"hello from the server\n"


class _EchoHandler(socketserver.BaseRequestHandler):
    """Greets first (server -> client), then echoes everything (client -> server -> client)."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            sock.sendall(GREETING)
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass  # the proxy resets relayed connections on down(): expected


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="echo-server", daemon=True
    )
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(WAIT_S)


@pytest.fixture
def proxy(echo_port: int) -> Iterator[TcpProxy]:
    with TcpProxy(free_port(), "127.0.0.1", echo_port) as p:
        yield p


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)


def is_dead(sock: socket.socket) -> bool:
    """The peer reset the connection or closed it; a hang raises ``TimeoutError`` instead."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def refused_or_dead(port: int) -> bool:
    """A new connection is reset during or right after the handshake, or closed at once."""
    try:
        with connect(port) as sock:
            return is_dead(sock)
    except ConnectionResetError:
        return True


def round_trip(port: int) -> socket.socket:
    """Connect through the proxy and check bytes flow both ways; the caller closes the socket."""
    sock = connect(port)
    assert recv_exactly(sock, len(GREETING)) == GREETING  # server -> client
    payload = bytes(range(256)) * 64  # 16 KiB: more than one recv on the way
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload  # client -> server -> client
    return sock


def test_starts_down(proxy: TcpProxy) -> None:
    assert not proxy.is_up
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen_port)


def test_up_relays_bytes_both_ways(proxy: TcpProxy) -> None:
    proxy.up()
    assert proxy.is_up
    with round_trip(proxy.listen_port), round_trip(proxy.listen_port):
        pass
    assert proxy.connections == 2


def test_up_twice_is_harmless(proxy: TcpProxy) -> None:
    proxy.up()
    proxy.up()
    with round_trip(proxy.listen_port):
        pass


def test_down_refuses_new_connections_and_resets_open_ones(proxy: TcpProxy) -> None:
    proxy.up()
    with round_trip(proxy.listen_port) as open_conn:
        proxy.down()
        assert not proxy.is_up
        with pytest.raises(ConnectionRefusedError):
            connect(proxy.listen_port)
        assert is_dead(open_conn)


def test_down_up_cycles_reuse_the_port(proxy: TcpProxy) -> None:
    for _ in range(3):
        proxy.up()
        with round_trip(proxy.listen_port):
            pass
        proxy.down()
        with pytest.raises(ConnectionRefusedError):
            connect(proxy.listen_port)
    assert proxy.connections == 3
    assert not any(t.name == "proxy-accept" and t.is_alive() for t in threading.enumerate())


def test_unreachable_target_resets_the_client(echo_port: int) -> None:
    dead = free_port()  # nothing listens here
    with TcpProxy(free_port(), "127.0.0.1", dead) as p:
        p.up()
        assert refused_or_dead(p.listen_port)
        assert p.connections == 0
        with round_trip(echo_port):  # the target server itself is fine
            pass


def test_close_is_idempotent(echo_port: int) -> None:
    p = TcpProxy(free_port(), "127.0.0.1", echo_port)
    p.close()  # never up
    p.up()
    with round_trip(p.listen_port):
        pass
    p.close()
    p.close()
    assert not p.is_up
    with pytest.raises(ConnectionRefusedError):
        connect(p.listen_port)
