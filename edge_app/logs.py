"""JSON-lines logging on stderr, with secrets kept out.

Every record is one JSON object: ``ts``, ``level``, ``logger``, ``msg`` and any ``extra`` fields.
PEM blocks and values of keys that look secret are replaced before anything is written, so a
careless ``log.info("%s", config)`` cannot leak a private key.
"""

from __future__ import annotations

__all__ = ["JsonFormatter", "configure_logging", "redact"]

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL)
_SECRET_KEYS = re.compile(r"(password|secret|token|private|credential)", re.IGNORECASE)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` with any PEM block (certificate or key) replaced by a marker."""
    return _PEM.sub("[REDACTED PEM]", text)


def _clean(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


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
