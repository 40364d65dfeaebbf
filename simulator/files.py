"""A real HTTP file server for over-the-air update tests and demos: serves one folder, honours
``Range: bytes=N-``, caps its bandwidth, and injects faults on demand.

Real sockets and threads (``ThreadingHTTPServer``). Faults, per file name:

- ``drop_after[name] = n``: the next response for ``name`` closes the connection after ``n``
  body bytes (once);
- ``truncate.add(name)``: every response announces the full length and sends half the body;
- ``status[name] = 404``: answer that status instead;
- ``ignore_range = True``: answer 200 with the whole file even to a Range request.

``requests`` records each request's path and Range header, ``sent`` the body bytes sent.
"""

from __future__ import annotations

__all__ = ["FileServer"]

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

_RANGE = re.compile(r"^bytes=(\d+)-$")
_CHUNK = 16 * 1024


class FileServer:
    """Serves ``folder`` on 127.0.0.1 (``url(name)`` gives a file's URL). Context manager."""

    def __init__(self, folder: Path, *, bytes_per_s: int | None = None) -> None:
        self.folder = Path(folder)
        self.bytes_per_s = bytes_per_s
        self.drop_after: dict[str, int] = {}
        self.truncate: set[str] = set()
        self.status: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        """The URL prefix of the folder (ends with '/')."""
        return f"http://127.0.0.1:{self.port}/"

    def url(self, name: str) -> str:
        return self.base + name

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="file-server", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        name = handler.path.lstrip("/")
        ranged = handler.headers.get("Range")
        with self._lock:
            self.requests.append((name, ranged))
            status = self.status.get(name)
            drop = self.drop_after.pop(name, None)
        path = self.folder / name
        if status is not None or "/" in name or not path.is_file():
            code = status or 404
            handler.send_response(code)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = path.read_bytes()
        start = 0
        match = _RANGE.match(ranged or "")
        if match is not None and not self.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        body = data[start:]
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if name in self.truncate:
            body = body[: len(body) // 2]
        if drop is not None:
            body = body[:drop]
        self._send(handler, body)
        if name in self.truncate or drop is not None:
            handler.close_connection = True

    def _send(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        started = time.monotonic()
        sent = 0
        for at in range(0, len(body), _CHUNK):
            block = body[at : at + _CHUNK]
            try:
                handler.wfile.write(block)
            except (BrokenPipeError, ConnectionResetError):
                return
            sent += len(block)
            with self._lock:
                self.sent += len(block)
            if self.bytes_per_s:
                ahead = sent / self.bytes_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # the server's own pacing, not a test's wait


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server._serve(self)

        def log_message(self, format: str, *args: object) -> None:
            pass  # tests read ``requests``; no access log on stderr

    return Handler
