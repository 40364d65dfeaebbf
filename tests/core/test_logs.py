"""JSON-lines logging: one object per record, and no PEM block or secret value ever written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from edge_app.logs import JsonFormatter, configure_logging
from edge_app.redact import redact

KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----"
)
RSA_KEY = KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY")
CERT = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n"
    "-----END CERTIFICATE-----"
)
SECRET_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
CERT_BODY = "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ"


class Captured:
    """A logger whose records are formatted by ``JsonFormatter`` into a string buffer."""

    def __init__(self, logger: logging.Logger, stream: io.StringIO) -> None:
        self.log = logger
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]

    def one(self) -> dict[str, Any]:
        (record,) = self.records()
        return record


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("edge_app.tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield Captured(logger, stream)
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_one_json_object_per_line_with_the_standard_fields(captured: Captured) -> None:
    captured.log.info("camera %s started", "dock", extra={"fps": 12.5, "frames": 3, "ok": True})
    captured.log.warning("second line\nwith a newline inside")
    lines = captured.text.splitlines()
    assert len(lines) == 2  # a newline in a message stays inside its JSON string
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info"
    assert first["logger"] == "edge_app.tests.logs"
    assert first["msg"] == "camera dock started"
    assert (first["fps"], first["frames"], first["ok"]) == (12.5, 3, True)
    assert datetime.fromisoformat(first["ts"]).utcoffset() == timedelta(0)
    assert second["level"] == "warning"
    assert second["msg"] == "second line\nwith a newline inside"
    # the LogRecord's own attributes are not dumped as extras
    assert not {"args", "levelno", "pathname", "lineno", "thread"} & set(first)


def test_extras_that_json_cannot_hold_are_written_as_text(captured: Captured) -> None:
    captured.log.info("x", extra={"path": io.StringIO, "none": None})
    record = captured.one()
    assert record["path"] == str(io.StringIO)
    assert record["none"] is None


@pytest.mark.parametrize("pem", [KEY, RSA_KEY, CERT], ids=["pkcs8", "rsa", "cert"])
def test_pem_in_the_message_is_redacted(captured: Captured, pem: str) -> None:
    captured.log.info("loaded " + pem + " from disk")
    record = captured.one()
    assert record["msg"] == "loaded [REDACTED PEM] from disk"
    assert "BEGIN" not in captured.text


def test_pem_in_args_is_redacted(captured: Captured) -> None:
    captured.log.info("tls material: %s and %s", KEY, CERT)
    assert captured.one()["msg"] == "tls material: [REDACTED PEM] and [REDACTED PEM]"
    assert SECRET_BODY not in captured.text
    assert CERT_BODY not in captured.text


def test_pem_in_an_extra_is_redacted(captured: Captured) -> None:
    captured.log.info("config", extra={"tls_material": f"cert:\n{CERT}\nkey:\n{KEY}"})
    assert captured.one()["tls_material"] == "cert:\n[REDACTED PEM]\nkey:\n[REDACTED PEM]"


def test_pem_in_a_non_string_extra_is_redacted(captured: Captured) -> None:
    captured.log.info("config", extra={"files": (CERT, "ca.pem"), "ids": {7}})
    record = captured.one()
    assert record["files"] == ["[REDACTED PEM]", "ca.pem"]
    assert record["ids"] == [7]
    assert CERT_BODY not in captured.text


def test_a_self_referencing_extra_does_not_break_logging(captured: Captured) -> None:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    captured.log.info("odd", extra={"loop": loop})
    record = captured.one()
    assert record["loop"]["name"] == "loop"
    assert "[NESTED]" in captured.text


def _load_key() -> None:
    raise ValueError(f"bad key material: {KEY}")


def test_pem_in_exception_text_is_redacted(captured: Captured) -> None:
    try:
        _load_key()
    except ValueError:
        captured.log.exception("loading the key failed")
    record = captured.one()
    assert record["level"] == "error"
    assert "ValueError: bad key material: [REDACTED PEM]" in record["exc"]
    assert "Traceback" in record["exc"]
    assert SECRET_BODY not in captured.text


def test_a_truncated_pem_block_is_still_redacted(captured: Captured) -> None:
    # "%.80s" style truncation cuts off the END line; the key body must not leak anyway
    captured.log.info("key starts: %.100s", KEY)
    assert SECRET_BODY[:20] not in captured.text
    assert captured.one()["msg"] == "key starts: [REDACTED PEM]"


@pytest.mark.parametrize(
    "key", ["password", "mqtt_password", "client_secret", "api_token", "PrivateKey", "credentials"]
)
def test_values_of_secret_looking_keys_are_redacted(captured: Captured, key: str) -> None:
    captured.log.info("connecting", extra={key: "hunter2", "host": "broker.local"})
    record = captured.one()
    assert record[key] == "[REDACTED]"
    assert record["host"] == "broker.local"
    assert "hunter2" not in captured.text


def test_secret_keys_nested_in_an_extra_are_redacted(captured: Captured) -> None:
    captured.log.info(
        "uplink",
        extra={"uplink": {"host": "broker.local", "auth": {"password": "hunter2"}, "ports": [1]}},
    )
    record = captured.one()
    assert "hunter2" not in captured.text
    assert record["uplink"] == {
        "host": "broker.local",
        "auth": {"password": "[REDACTED]"},
        "ports": [1],
    }


URL = "rtsp://admin:hunter2@cam.local:554/live?token=s3cr3t"


def _reach() -> None:
    raise OSError(f"cannot reach {URL}")


def test_url_secrets_in_messages_extras_and_exceptions_are_redacted(captured: Captured) -> None:
    url = URL
    shown = "rtsp://***@cam.local:554/live?token=***"
    try:
        _reach()
    except OSError:
        captured.log.exception("camera %s failed", url, extra={"source": {"url": url}})
    record = captured.one()
    assert "hunter2" not in captured.text
    assert "s3cr3t" not in captured.text
    assert record["msg"] == f"camera {shown} failed"
    assert record["source"] == {"url": shown}
    assert f"OSError: cannot reach {shown}" in record["exc"]


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("no secrets -----here----- at all") == "no secrets -----here----- at all"
    assert redact(f"a {CERT} b {KEY} c") == "a [REDACTED PEM] b [REDACTED PEM] c"


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards (``configure_logging`` replaces its handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    paho_level = logging.getLogger("paho").level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("paho").setLevel(paho_level)


def test_configure_logging_sets_the_level_and_writes_json(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging("warning", stream)
    assert root_logger.level == logging.WARNING
    assert len(root_logger.handlers) == 1
    log = logging.getLogger("edge_app.tests.configured")
    log.info("not shown")
    log.warning("shown %d", 1)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["msg"] for line in lines] == ["shown 1"]


def test_configure_logging_debug_keeps_paho_quiet(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure_logging("debug", stream)
    assert root_logger.level == logging.DEBUG
    assert logging.getLogger("paho").level == logging.INFO
    logging.getLogger("edge_app.tests.configured").debug("detail")
    logging.getLogger("paho").debug("packet noise")
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["detail"]


def test_configure_logging_rejects_an_unknown_level(root_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match=r"(?i)verbose"):
        configure_logging("verbose", io.StringIO())
