"""What a rejection tells the cloud, kept within fixed byte budgets.

A desired document may name hundreds of invalid fields, each costing ~200 bytes of reason:
copied in full, the errors of a 6 KB delta naming 700 bad keys would make a 131 KB
``reported`` document (the shadow service refuses state documents over 8 KB) and a 131 KB
audit event (over the 128 KB publish limit, so dead-lettered): the rejection would never reach
the cloud. Both carry the first errors that fit their budget, each field and reason clipped,
and ``more_errors``, the count of those left out. Sizes are of the compact JSON the device
sends (ASCII, escapes counted), so a budget holds whatever characters the input had.
"""

from __future__ import annotations

__all__ = [
    "AUDIT_ERRORS_MAX_BYTES",
    "FIELD_MAX_BYTES",
    "REASON_MAX_BYTES",
    "REPORT_MAX_BYTES",
    "bounded_errors",
    "clip",
    "config_status",
    "encoded_size",
    "rejected_report",
]

import json
from collections.abc import Sequence
from typing import Any

from edge_app.config import ConfigSnapshot
from edge_app.domain import ModelRef
from edge_app.errors import FieldError

REPORT_MAX_BYTES = 1024
"""Largest rejection ``update`` payload, bytes. The shadow's 8 KB holds desired *and*
reported: even beside a 6 KB desired document, a rejection report still fits."""

AUDIT_ERRORS_MAX_BYTES = 4096
"""Largest ``errors`` list in a config audit event, bytes (the event stays under ~5 KB, far
below the 128 KB publish limit)."""

FIELD_MAX_BYTES = 128
"""Longest field path of one reported error, bytes; longer ones are clipped in the middle."""

REASON_MAX_BYTES = 256
"""Longest reason of one reported error, bytes; longer ones are clipped in the middle, so the
advice at the end of a message (e.g. the models to choose from) survives a huge value."""

_MARK = "..."
_COMPACT = (",", ":")


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as the device sends it: compact JSON, non-ASCII escaped."""
    return len(json.dumps(value, separators=_COMPACT))


def _fitting(chars: str, budget: int) -> int:
    """How many leading characters of ``chars`` fit ``budget`` bytes once JSON-escaped."""
    used = 0
    for count, char in enumerate(chars):
        used += encoded_size(char) - 2  # without the quotes
        if used > budget:
            return count
    return len(chars)


def clip(text: str, max_bytes: int) -> str:
    """``text`` itself if its JSON string body fits ``max_bytes``; else its head and tail
    around ``...``, together within ``max_bytes``."""
    if encoded_size(text) - 2 <= max_bytes:
        return text
    room = max_bytes - len(_MARK)
    head = _fitting(text, room - room // 2)
    tail = _fitting(text[::-1], room // 2)
    return text[:head] + _MARK + (text[len(text) - tail :] if tail else "")


def bounded_errors(
    errors: Sequence[FieldError], max_bytes: int
) -> tuple[list[dict[str, str]], int]:
    """The first ``errors`` (each clipped) whose JSON list fits ``max_bytes``, and how many
    of the rest were left out. Order is kept: the first error is the first to show."""
    shown: list[dict[str, str]] = []
    used = 2  # []
    for error in errors:
        entry = {
            "field": clip(error.path, FIELD_MAX_BYTES),
            "reason": clip(error.message, REASON_MAX_BYTES),
        }
        cost = encoded_size(entry) + (1 if shown else 0)  # the comma before it
        if used + cost > max_bytes:
            break
        shown.append(entry)
        used += cost
    return shown, len(errors) - len(shown)


def config_status(snapshot: ConfigSnapshot, model: ModelRef) -> dict[str, Any]:
    """The ``reported.config`` keys that say what runs: shadow version, digest, source and
    the model in force (as events name it; a name longer than ``FIELD_MAX_BYTES``, possible
    for a model given by path, is clipped so that a rejection report keeps room for errors)."""
    return {
        "version": snapshot.remote_version,
        "digest": snapshot.digest,
        "source": snapshot.source,
        "model": {**model.to_json(), "name": clip(model.name, FIELD_MAX_BYTES)},
    }


def rejected_report(
    current: ConfigSnapshot,
    model: ModelRef,
    version: int | None,
    errors: Sequence[FieldError],
    token: str | None,
) -> dict[str, Any]:
    """The ``update`` document reporting that ``version`` was rejected and ``current`` (run by
    ``model``) kept: at most ``REPORT_MAX_BYTES`` as sent, with as many errors as fit. At least
    one always fits: the rest is bounded too, as the handler passes 64-bit versions and client
    tokens of at most 64 printable ASCII characters, and model names are clipped."""
    config: dict[str, Any] = {
        **config_status(current, model),
        "status": "rejected",
        "rejected_version": version,
        "errors": [],
        "more_errors": len(errors),
    }
    report: dict[str, Any] = {"state": {"reported": {"config": config}}}
    if token is not None:
        report["clientToken"] = token
    # the count may shrink to fewer digits once errors are shown: reserve its full width
    room = REPORT_MAX_BYTES - encoded_size(report)
    config["errors"], config["more_errors"] = bounded_errors(errors, room + 2)
    return report
