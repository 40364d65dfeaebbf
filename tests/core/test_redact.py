"""The one redaction: PEM blocks, URL userinfo, query values and fragments, in any text."""

from __future__ import annotations

import io
import json
import sys

import pytest
import yaml

from edge_app.redact import (
    RedactingStream,
    looks_like_pem,
    redact,
    redact_url,
    redacted_output,
)

KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "-----END PRIVATE KEY-----"
)
BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # userinfo goes, host, port and path stay
        ("rtsp://admin:s3cr3t@cam:554/live", "rtsp://***@cam:554/live"),
        ("rtsp://admin@cam/live", "rtsp://***@cam/live"),
        # a password holding "@" or "/" (unescaped) is hidden whole
        ("rtsp://admin:p@ss/w0rd:s3cr3t@10.0.0.7/live", "rtsp://***@10.0.0.7/live"),
        # every query value, whatever the parameter's name; names stay
        (
            "rtsp://cam:554?token=s3cr3t&password=s3cr3t",
            "rtsp://cam:554?token=***&password=***",
        ),
        (
            "http://cam/snap.cgi?channel=1&apikey=s3cr3t",
            "http://cam/snap.cgi?channel=***&apikey=***",
        ),
        ("http://cam/x?s3cr3t", "http://cam/x?***"),  # a bare parameter is all value
        ("http://cam/x?a=&&b=s3cr3t", "http://cam/x?a=&&b=***"),
        ("https://cam/x#access_token=s3cr3t", "https://cam/x#***"),
        (
            "https://u:s3cr3t@cam/x?t=s3cr3t#s3cr3t",
            "https://***@cam/x?t=***#***",
        ),
        # an "@" inside the query is not userinfo
        ("rtsp://cam/s?user=a@s3cr3t&k=v", "rtsp://cam/s?user=***&k=***"),
        # "user:pa?ss@host": no host:port can be told apart, so everything after the scheme goes
        ("rtsp://admin:s3c?r3t@cam/live", "rtsp://***"),
        ("rtsp://admin:s3c/r?3t@cam/live", "rtsp://***"),
        ("rtsp://[fe80::1]:554/live?t=s3cr3t", "rtsp://[fe80::1]:554/live?t=***"),
        # a URL that went through pathlib.Path has one slash left
        ("rtsp:/admin:s3cr3t@cam/v?t=s3cr3t", "rtsp:/***@cam/v?t=***"),
        ("http://cam.local/mjpeg", "http://cam.local/mjpeg"),
        ("file:///var/lib/edge-app/clip.mp4", "file:///var/lib/edge-app/clip.mp4"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(url) == shown  # the same when found in running text
    assert redact(shown) == shown  # idempotent: the logs and the CLI may both apply it


SECRET_URL = "rtsp://admin:s3cr3t@cam:554/live?token=s3cr3t"
SHOWN = "rtsp://***@cam:554/live?token=***"


@pytest.mark.parametrize(
    "render",
    [
        lambda u: f"camera dock: cannot open {u}; retrying in 0.5 s",
        lambda u: f"({u}).",
        lambda u: json.dumps({"url": u, "next": 1}),
        lambda u: yaml.safe_dump({"cameras": [{"source": {"url": u}}]}),
        lambda u: repr({"url": u}),
        lambda u: f'camera{{url="{u}"}} 1',  # a Prometheus label
    ],
    ids=["sentence", "punctuation", "json", "yaml", "repr", "prometheus"],
)
def test_urls_in_running_text(render: object) -> None:
    assert callable(render)
    text = render(SECRET_URL)
    out = redact(text)
    assert "s3cr3t" not in out
    assert "admin" not in out
    assert out == render(SHOWN)  # only the secrets changed: JSON stays JSON, YAML stays YAML


@pytest.mark.parametrize(
    "render",
    [json.dumps, lambda u: yaml.safe_dump({"url": u}), repr, str],
    ids=["json", "yaml", "repr", "str"],
)
@pytest.mark.parametrize("password", ["s3'cr3t", "s3'"])
def test_a_single_quote_in_a_password_does_not_end_the_url(render: object, password: str) -> None:
    assert callable(render)
    out = redact(render(f"rtsp://admin:{password}@cam/live?t=1"))
    assert "s3" not in out
    assert "cr3t" not in out
    assert "rtsp://***@cam/live?t=***" in out


@pytest.mark.parametrize(
    "message",
    [
        f'Could not connect to the endpoint URL: "{SECRET_URL}"; retrying',
        f"cannot open {SECRET_URL}\nnext line",
        f"tab\t{SECRET_URL}\tafter",
    ],
)
def test_a_json_log_line_is_redacted_the_same_twice(message: str) -> None:
    # the log formatter redacts the message, then the CLI's stderr redacts the JSON line
    line = json.dumps({"msg": redact(message)})
    assert redact(line) == line
    assert json.loads(line)["msg"] == message.replace(SECRET_URL, SHOWN)


@pytest.mark.parametrize(
    "text",
    [
        "String should match pattern '^(rtsp|rtsps|http|https|rtmp)://'",
        "health on http://127.0.0.1:8321/status at 10:15:02",
        "outbox /var/lib/edge-app/outbox.db: 12 event(s)",
        "no secrets -----here----- at all",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "label", ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "CERTIFICATE", "X509 CRL"]
)
def test_pem_blocks(label: str) -> None:
    pem = KEY.replace("PRIVATE KEY", label)
    assert looks_like_pem(f"key: {pem}")
    assert redact(f"a {pem} b") == "a [REDACTED PEM] b"
    assert redact(f"cut short: {pem[:80]}") == "cut short: [REDACTED PEM]"


def test_looks_like_pem_only_for_a_pem_header() -> None:
    assert not looks_like_pem("/etc/edge-app/private.pem.key")
    assert not looks_like_pem("-----BEGIN")
    assert looks_like_pem(KEY.splitlines()[0])


def test_a_stream_redacts_each_write_and_delegates_the_rest() -> None:
    target = io.StringIO()
    stream = RedactingStream(target)
    assert stream.write(f"edge-app: {KEY} from {SECRET_URL}\n") == len(KEY) + len(SECRET_URL) + 17
    stream.flush()
    assert target.getvalue() == f"edge-app: [REDACTED PEM] from {SHOWN}\n"
    assert not stream.isatty()
    assert not stream.closed
    del stream  # garbage collection must not close the stream it wraps
    assert not target.closed
    RedactingStream(target).close()  # an explicit close does (a broken pipe closes stderr)
    assert target.closed


def test_redacted_output_wraps_and_restores_the_standard_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = sys.stdout, sys.stderr
    with redacted_output():
        print(SECRET_URL)
        print(KEY, file=sys.stderr)
    assert (sys.stdout, sys.stderr) == before
    out, err = capsys.readouterr()
    assert out == SHOWN + "\n"
    assert err == "[REDACTED PEM]\n"
    assert BODY not in err
