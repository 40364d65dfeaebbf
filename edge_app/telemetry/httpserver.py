"""A stdlib HTTP server an untrusted network cannot exhaust, with one authorization gate.

``http.server.ThreadingHTTPServer`` starts a thread per connection and waits for its request
forever: 200 idle connections held 200 threads indefinitely. ``GuardedHTTPServer`` instead:

* serves at most ``max_connections`` connections at once, each on a thread of its own. A
  connection beyond that displaces the oldest one still sending its request, so clients that
  connect and say nothing (or trickle a byte a second) lose their place to new ones and cannot
  lock a probe out; when every slot is busy answering, the new one gets 503 at once;
* gives each client ``timeout_s`` seconds *in total* to send its request, not per byte, so a
  slowloris client is cut at that deadline, and again ``timeout_s`` to take the answer;
* reads at most ``MAX_REQUEST_BYTES`` of a connection (431 beyond);
* answers one request per connection (HTTP/1.0), so those deadlines bound the whole exchange.

``GuardedHandler.parse_request`` is the one gate every request passes before any ``do_*``
method runs (``access.Access.check``): with a ``BearerToken``, a request without it (or the
local page's session cookie) gets 401 and reaches no handler; every ``POST`` must pass the CSRF
check; without a token the ``Host`` must be an address, not a name (DNS rebinding).
"""

from __future__ import annotations

__all__ = ["MAX_REQUEST_BYTES", "GuardedHTTPServer", "GuardedHandler"]

import contextlib
import io
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any

from edge_app.telemetry.access import Access
from edge_app.telemetry.token import BearerToken

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
"""Most bytes read from one connection (request line, headers and any body)."""

# How long the accepting thread waits for a displaced connection's thread to give up its slot,
# seconds; it only has to notice its socket was shut down.
_DISPLACE_WAIT_S = 1.0
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)


class _RequestTooLargeError(Exception):
    pass


class _DeadlineReader(io.RawIOBase):
    """A socket's bytes until ``deadline`` (monotonic seconds) or ``limit`` bytes are used up;
    then ``TimeoutError`` or ``_RequestTooLargeError``. The handler owns the socket."""

    def __init__(self, sock: socket.socket, deadline: float, limit: int) -> None:
        super().__init__()
        self._sock, self._deadline, self._left = sock, deadline, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        if self._left <= 0:
            raise _RequestTooLargeError
        self._sock.settimeout(remaining)  # so each recv waits only for what is left
        with memoryview(buffer) as view:
            count = self._sock.recv_into(view[: self._left])
        self._left -= count
        return count


class GuardedHTTPServer(HTTPServer):
    """``HTTPServer`` with bounded connections and threads, deadlines and a bearer token.

    ``timeout_s``: seconds to send the request, and again to read the answer.
    ``token``: required on every request when given. The owner calls ``shutdown()`` (if
    serving) and ``server_close()``, which also ends every connection and joins its thread.
    """

    request_queue_size = 256  # accept backlog: excess connections are sorted out once accepted

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[GuardedHandler],
        *,
        timeout_s: float,
        max_connections: int,
        token: BearerToken | None,
    ) -> None:
        if timeout_s <= 0 or max_connections < 1:
            raise ValueError("timeout_s must be > 0 and max_connections >= 1")
        self.timeout_s = timeout_s
        self.token = token
        self.access = Access(token)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        # Sockets whose request is still being read, oldest first: who may be displaced.
        self._reading: dict[socket.socket, None] = {}
        self._threads: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """On the accepting thread: take a slot (displacing a reader if need be) or refuse."""
        if not self._slots.acquire(blocking=False) and not (
            self._displace_oldest_reader() and self._slots.acquire(timeout=_DISPLACE_WAIT_S)
        ):
            self._refuse(request)
            return
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), name="health-http-client"
        )
        thread.daemon = True  # a stuck client must not keep the process alive
        with self._lock:
            self._reading[request] = None
            self._threads[request] = thread
        try:
            thread.start()
        except RuntimeError:  # the OS has no thread to give: refuse, keep the slot free
            with self._lock:
                self._reading.pop(request, None)
                self._threads.pop(request, None)
            self._slots.release()
            self._refuse(request)

    def request_read(self, request: socket.socket) -> None:
        """The handler has the whole request: the connection may no longer be displaced."""
        with self._lock:
            self._reading.pop(request, None)

    def server_close(self) -> None:
        """Close the listening socket, end every connection, join their threads."""
        super().server_close()
        with self._lock:
            threads = list(self._threads.items())
            for sock, _ in threads:
                _shutdown(sock)
        for _, thread in threads:
            thread.join()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Never socketserver's traceback on stderr: a client that went away is routine.
        exc = sys.exception()
        if isinstance(exc, OSError):
            _log.debug("health endpoint client %s: %s", client_address[0], exc)
        else:
            _log.error("health endpoint failed", exc_info=exc)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            # Forgotten under the lock before it is closed, so a displacement or close()
            # holding the lock never shuts down a socket number already reused.
            with self._lock:
                self._reading.pop(request, None)
                self._threads.pop(request, None)
            self.shutdown_request(request)
            self._slots.release()

    def _displace_oldest_reader(self) -> bool:
        with self._lock:
            oldest = next(iter(self._reading), None)
            if oldest is None:
                return False
            del self._reading[oldest]
            _shutdown(oldest)  # its thread's recv returns at once and frees the slot
        return True

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)  # the accepting thread must never wait on a client
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the client may have closed it already
        sock.shutdown(socket.SHUT_RDWR)


class GuardedHandler(BaseHTTPRequestHandler):
    """Base of the endpoint's handlers: deadline- and size-bound reading, the token gate.

    Subclasses add ``do_GET`` (etc.) and never see a request that failed the gate.
    """

    server: GuardedHTTPServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain socket file: replaced by the bounded reader
        deadline = time.monotonic() + self.server.timeout_s
        reader = _DeadlineReader(self.connection, deadline, MAX_REQUEST_BYTES)
        self.rfile = io.BufferedReader(reader)
        # What send_error reads, in case the request line itself is refused.
        self.requestline, self.command = "", ""
        self.request_version = self.default_request_version

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()  # TimeoutError: it closes the connection itself
        except _RequestTooLargeError:
            self.close_connection = True
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request larger than {MAX_REQUEST_BYTES} bytes",
            )

    def parse_request(self) -> bool:
        """The gate: runs for every request, before any ``do_*`` method."""
        if not super().parse_request():
            return False
        self.server.request_read(self.connection)
        self.connection.settimeout(self.server.timeout_s)  # the answer's own deadline
        verdict = self.server.access.check(self.command, self.path.split("?", 1)[0], self.headers)
        if not verdict.ok:
            body = verdict.message.encode()
            self.send_response(verdict.status)
            if verdict.status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Bearer realm="edge-app"')
            if verdict.location is not None:
                self.send_header("Location", verdict.location)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return False
        return True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would flood the log; the token is never in it either
