"""Who may use the HTTP endpoint, and which state-changing requests are the page's own.

One ``Access`` per server, checked by ``GuardedHandler.parse_request`` before any handler runs:

* **Authentication** (only with a bearer token, i.e. when the endpoint is exposed): a request
  passes with ``Authorization: Bearer <token>`` (probes, scripts) or with the session cookie a
  browser gets by posting the token to the login form (``/ui/login``). The cookie holds a
  per-process random session secret, never the token; it is ``HttpOnly`` (no script reads it)
  and ``SameSite=Strict`` (no other site's page sends it). A restart signs every browser out.
* **Host check**: without a token (loopback) the ``Host`` header must name an IP address or
  ``localhost``, so a page on another site cannot reach the endpoint through DNS rebinding (its
  name resolving to 127.0.0.1).
* **CSRF**: every ``POST`` must carry ``X-CSRF-Token: <per-process secret>`` (the login form
  sends it as a form field) and, when the browser names one, an ``Origin`` equal to the
  address it asked (``Host``). Another site's page cannot read the secret (same-origin policy)
  nor set the header without a CORS preflight, which this server never grants.

The secrets live in memory only and are compared in constant time.
"""

from __future__ import annotations

__all__ = ["CSRF_HEADER", "LOGIN_PATH", "SESSION_COOKIE", "Access", "Verdict"]

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from edge_app.telemetry.token import BearerToken

SESSION_COOKIE = "edge_app_session"
"""Name of the session cookie set by the login form."""
CSRF_HEADER = "X-CSRF-Token"
"""Header carrying the CSRF secret on every state-changing request."""
LOGIN_PATH = "/ui/login"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer: ``ok``, or the HTTP status and a message saying what to do."""

    ok: bool
    status: int = 200
    message: str = ""
    location: str | None = None  # a redirect's target


_OK = Verdict(True)


class Access:
    """The endpoint's authentication and CSRF secrets. ``token``: None when loopback-bound."""

    def __init__(self, token: BearerToken | None) -> None:
        self.token = token
        self._session = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)

    def check(self, method: str, path: str, headers: Message) -> Verdict:
        """Whether a request may reach its handler (``path`` without the query)."""
        if self.token is None and not _local_host(headers.get("Host")):
            return Verdict(
                False,
                421,
                "the Host header must name an IP address or localhost; open the "
                "page as http://127.0.0.1:<port>/ui/\n",
            )
        if self.token is not None and path != LOGIN_PATH and not self.authenticated(headers):
            if method == "GET" and path in ("/ui", "/ui/"):  # a person opening the page
                return Verdict(False, 303, "sign in first\n", LOGIN_PATH)
            return Verdict(
                False,
                401,
                "401 unauthorized: send the token of health.token_file or health.token_env as "
                f"the header 'Authorization: Bearer <token>', or sign in at {LOGIN_PATH}\n",
            )
        # The login form sends the secret as a field: its handler checks it.
        posting = method not in ("GET", "HEAD") and path != LOGIN_PATH
        if posting and not self.same_origin_post(headers):
            return Verdict(
                False,
                403,
                f"cross-site or unsigned request refused: a POST needs the page's {CSRF_HEADER} "
                "header and a same-origin Origin\n",
            )
        return _OK

    def authenticated(self, headers: Message) -> bool:
        """A valid bearer token, or the session cookie (always True without a token)."""
        if self.token is None:
            return True
        if self.token.matches(headers.get("Authorization")):
            return True
        return hmac.compare_digest(_cookie(headers, SESSION_COOKIE), self._session)

    def same_origin_post(self, headers: Message, form_csrf: str | None = None) -> bool:
        """The CSRF check: the secret (header, or ``form_csrf`` of the login form) and an
        ``Origin``, when sent, naming the host the request was sent to."""
        presented = form_csrf if form_csrf is not None else headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(presented.encode(), self.csrf.encode()):
            return False
        origin = headers.get("Origin")
        if origin is None:
            return True  # not a browser's cross-site form: those always send Origin
        return urlsplit(origin).netloc == (headers.get("Host") or "")

    def login(self, presented: str) -> str | None:
        """The ``Set-Cookie`` value when ``presented`` is the bearer token, else None."""
        if self.token is None or not self.token.matches(f"Bearer {presented.strip()}"):
            return None
        return f"{SESSION_COOKIE}={self._session}; HttpOnly; SameSite=Strict; Path=/"


def _cookie(headers: Message, name: str) -> str:
    try:
        jar = SimpleCookie(headers.get("Cookie") or "")
    except CookieError:
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""


def _local_host(host: str | None) -> bool:
    """``Host`` names an IP literal (any port) or localhost: no name a DNS rebind could use."""
    if not host:
        return True  # HTTP/1.0 clients (probes) may send none
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
