"""``edge-app health --config FILE``: ask the running daemon's ``/healthz``.

The probe of a supervisor that cannot speak HTTP itself: the Docker image's ``HEALTHCHECK``
(``deploy/docker/Dockerfile``), a Greengrass or cron check. It reads the same config as the
daemon, so it finds the endpoint (``health.host``/``health.port``) and sends the bearer token
when one is configured. Exit 0 when the daemon answers ``ok`` or ``degraded``; 1 when it
answers ``failing``, cannot be reached, refuses the token, or the config cannot be read (Docker
reserves exit code 2, so every failure is 1).
"""

from __future__ import annotations

__all__ = ["register"]

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from edge_app.cli.configarg import add_config_options, config_source, load_config_arg
from edge_app.config import HealthConfig
from edge_app.errors import ConfigError
from edge_app.telemetry import BearerToken, load_token

EXIT_UNHEALTHY = 1
"""Every failure; Docker's HEALTHCHECK treats 1 as unhealthy and reserves 2."""

# A server bound to every address is reached on loopback from the same host or container.
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "health",
        help="ask the running daemon's /healthz; exit 0 if ok or degraded, else 1",
        description="Ask the running daemon's /healthz (health.host and health.port of the "
        "config, with its bearer token if one is set). Prints the state and its reasons. "
        "Exit 0: ok or degraded; 1: failing, unreachable, token refused or config unreadable.",
    )
    add_config_options(parser)
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.set_defaults(func=_health)


class _ProbeFailedError(Exception):
    """The daemon could not be asked, or did not answer with a health report."""


def _health(args: argparse.Namespace) -> int:
    try:
        health = load_config_arg(args).health
        url = _url(health, config_source(args))
        code, doc = _ask(url, load_token(health), args.timeout)
    except (ConfigError, _ProbeFailedError) as exc:
        print(f"edge-app health: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    if args.json:
        print(json.dumps(doc))
    else:
        reasons = "; ".join(str(r) for r in doc.get("reasons", []))
        print(f"{doc['state']}{': ' + reasons if reasons else ''}")
    return 0 if code == 200 else EXIT_UNHEALTHY


def _url(health: HealthConfig, source: str) -> str:
    if not health.enabled:
        raise _ProbeFailedError(f"health.enabled is false in {source}: there is nothing to ask")
    if health.port == 0:
        raise _ProbeFailedError(
            f"health.port is 0 (any free port) in {source}: set a fixed port so that a probe "
            "can find the endpoint"
        )
    host = _WILDCARD.get(health.host, health.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{health.port}/healthz"


def _ask(url: str, token: BearerToken | None, timeout: float) -> tuple[int, dict[str, Any]]:
    """GET ``url``; (HTTP status, report) for a 200 or 503 with a health report."""
    request = urllib.request.Request(url)  # noqa: S310  # http:// on a host we build ourselves
    if token is not None:
        request.add_header("Authorization", token.authorization())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            code, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _ProbeFailedError(
            f"no answer from {url} ({reason}): is edge-app running with this config?"
        ) from exc
    if code == 401:
        raise _ProbeFailedError(f"{url} refused the token (401): use the daemon's own config")
    doc = _parse(body)
    if doc is None or code not in (200, 503):
        raise _ProbeFailedError(f"{url} answered HTTP {code} without a health report")
    return code, doc


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("state"), str) else None
