"""The seam between the HTTP endpoint and the pages it serves besides its own three routes.

``HealthServer`` owns the socket, the deadlines and the gate (``access.Access``); a ``Pages``
implementation (``edge_app.ui.StatusPages``, built by the composition root) answers the rest.
It receives requests that already passed authentication and, for ``POST``, the CSRF check.
"""

from __future__ import annotations

__all__ = ["Pages", "Request", "Response"]

from dataclasses import dataclass
from email.message import Message
from typing import Protocol

from edge_app.telemetry.access import Access


@dataclass(frozen=True, slots=True)
class Request:
    """One request: ``path`` without the query, ``query`` parsed (last value wins), ``body``
    (bytes, bounded by ``httpserver.MAX_REQUEST_BYTES``), ``access`` the server's gate."""

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    access: Access


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: status, content type, body bytes and extra headers (name, value)."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class Pages(Protocol):
    """Answers the requests the endpoint has no route for."""

    def handle(self, request: Request) -> Response | None:
        """The answer, or None when the path is not one of these pages (the server says 404).
        Must not raise for bad input: a 4xx ``Response`` that says what is wrong."""
        ...
