"""A TCP proxy that can take the network down and bring it back (the demo's outage switch).

``down()`` closes the listening socket and resets every relayed connection, so the appliance
sees exactly what a dead uplink looks like: connection refused / reset. ``up()`` listens again
on the same port. The other faults (``simulator.outage`` scripts them):

* ``cut()``: reset (RST) every open connection but keep listening, as a NAT timeout or a
  flapping cellular link does;
* ``blackhole(True)``: connections stay open (and new ones are accepted) but no byte gets
  through in either direction (nothing is read, so nothing is lost either: TCP delivers it if
  the path heals in time), so only keepalives and timeouts reveal the outage;
* ``slow(bytes_per_s, latency_s)``: every chunk is delayed by ``latency_s`` and paced to
  ``bytes_per_s`` per direction (``slow(None)`` restores full speed).
"""

from __future__ import annotations

__all__ = ["TcpProxy"]

import contextlib
import logging
import selectors
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class TcpProxy:
    """Relays ``127.0.0.1:listen_port`` to ``target``; starts down unless ``up()`` is called."""

    def __init__(self, listen_port: int, target_host: str, target_port: int) -> None:
        self.listen_port = listen_port
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self._blackhole = False
        self._link: tuple[float | None, float] | None = None  # (bytes/s, latency s)

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def up(self) -> None:
        """Start accepting and relaying connections."""
        with self._lock:
            if self._listener is not None:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.listen_port))
            sock.listen(16)
            self._listener = sock
        thread = threading.Thread(
            target=self._accept, args=(sock,), name="proxy-accept", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        log.info("network up: relaying :%d -> %s:%d", self.listen_port, *self._target)

    def down(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            # close() alone does not wake a thread blocked in accept(); shutdown() does, and
            # only then is the port free to listen on again
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            for thread in self._threads:
                thread.join(timeout=2.0)
            self._threads = [t for t in self._threads if t.is_alive()]
        for conn in conns:
            _reset(conn)
        log.info("network down: :%d refuses connections", self.listen_port)

    def cut(self) -> None:
        """Reset (RST) every open connection; keep accepting new ones."""
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _reset(conn)
        log.info("network cut: %d connection(s) reset", len(conns) // 2)

    def blackhole(self, on: bool) -> None:
        """Stall both directions (``True``: silence, bytes held back) or relay again (``False``)."""
        self._blackhole = on
        log.info("black hole %s", "on: bytes are swallowed" if on else "off")

    def slow(self, bytes_per_s: float | None, latency_s: float = 0.0) -> None:
        """Pace each direction to ``bytes_per_s`` and delay each chunk by ``latency_s`` seconds;
        ``slow(None)`` with no latency restores full speed."""
        if (bytes_per_s is not None and not bytes_per_s > 0) or latency_s < 0:
            raise ValueError(
                f"slow link needs bytes_per_s > 0 (or None) and latency_s >= 0, got "
                f"{bytes_per_s} and {latency_s}"
            )
        self._link = None if bytes_per_s is None and latency_s == 0 else (bytes_per_s, latency_s)
        log.info("link: %s bytes/s, %.3f s latency", bytes_per_s or "full", latency_s)

    def close(self) -> None:
        self.down()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by down()
            try:
                upstream = socket.create_connection(self._target, timeout=5.0)
            except OSError as exc:
                log.warning("proxy: target %s:%d unreachable: %s", *self._target, exc)
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _reset(client)
                    _reset(upstream)
                    return
                self._conns.update((client, upstream))
                self.connections += 1
            threading.Thread(
                target=self._relay, args=(client, upstream), name="proxy-relay", daemon=True
            ).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            sel.register(b, selectors.EVENT_READ)
            try:
                while True:
                    if self._blackhole:
                        # Read nothing: bytes wait in the kernel buffers and the peers hear
                        # silence, as on a path that drops every packet (TCP then delivers
                        # them intact if the path heals before a keepalive gives up).
                        time.sleep(0.02)
                        if a.fileno() < 0 or b.fileno() < 0:
                            return
                        continue
                    for key, _ in sel.select(timeout=0.1):
                        src: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = src.recv(65536)
                        if not data:
                            return
                        link = self._link
                        if link is not None:
                            # Latency plus serialisation time at the link's rate; one thread
                            # per connection, so this also paces the other direction.
                            rate, latency = link
                            time.sleep(latency + (len(data) / rate if rate else 0.0))
                        peer[src].sendall(data)
                    if a.fileno() < 0 or b.fileno() < 0:
                        return
            except (OSError, ValueError):
                return
            finally:
                with self._lock:
                    self._conns.discard(a)
                    self._conns.discard(b)
                a.close()
                b.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()
