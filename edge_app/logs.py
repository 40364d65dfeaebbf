"""JSON-lines logging on stderr, with secrets kept out.

Every record is one JSON object: ``ts``, ``level``, ``logger``, ``msg`` and any ``extra`` fields.
Text goes through ``edge_app.redact.redact`` (PEM blocks, URL credentials and query values)
and values of keys that look secret are replaced before anything is written, so a careless
``log.info("%s", config)`` cannot leak a private key or a camera's password.
"""

from __future__ import annotations

__all__ = ["JsonFormatter", "configure_logging"]

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from edge_app.redact import REDACTED, redact

_SECRET_KEYS = re.compile(r"(password|secret|token|private|credential)", re.IGNORECASE)
_MAX_DEPTH = 8
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _clean(key: str, value: Any, depth: int = 0) -> Any:
    if _SECRET_KEYS.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return _clean_container(value, depth)
    return redact(str(value))


def _clean_container(value: Any, depth: int) -> Any:
    # walk containers: str() of a dict would write a nested {"password": ...} out verbatim
    if depth >= _MAX_DEPTH:
        return "[NESTED]"
    if isinstance(value, Mapping):
        return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
    return [_clean("", v, depth + 1) for v in value]


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = _clean(key, value)
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send the ``edge_app`` and ``simulator`` loggers to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # paho logs every packet at DEBUG; keep it quiet unless asked for
    logging.getLogger("paho").setLevel(max(logging.INFO, root.level))
