"""Secrets kept out of every output: PEM blocks, URL credentials and URL query values.

The one redaction of the project. It is applied where text leaves the process: the JSON log
lines (``edge_app.logs``), every line the ``edge-app`` and ``python -m simulator`` commands
print (``redacted_output``), the health endpoint's bodies and the description of a camera's
source. Config validation uses ``looks_like_pem`` to refuse key or certificate text pasted
where a file path belongs.

What is hidden:

- a PEM block, ``-----BEGIN ...-----`` to ``-----END ...-----`` (a block cut short, to the
  end of the text), replaced by ``[REDACTED PEM]``;
- in a URL (``scheme:/...``), each replaced by ``***``: the userinfo (``user:password@``),
  the value of every query parameter (names are kept; a parameter with no ``=`` is hidden
  whole) and the fragment. Scheme, host, port and path are kept, so a user can still tell
  which camera it is. An authority that is not ``host[:port]`` (a password with an
  unescaped ``?``, ``#`` or ``/``) hides everything after the scheme.

``redact`` is idempotent: redacted text passes through it unchanged.
"""

from __future__ import annotations

__all__ = [
    "REDACTED",
    "URL_MARK",
    "RedactingStream",
    "breaks_url",
    "looks_like_pem",
    "redact",
    "redact_url",
    "redacted_output",
]

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO, cast

REDACTED = "[REDACTED]"
"""What a whole hidden value is replaced with (the logs' secret-looking keys)."""
URL_MARK = "***"
"""What a hidden part of a URL is replaced with (no bracket: a URL may end at one)."""

_PEM_MARK = "[REDACTED PEM]"
# an unterminated block (a message cut short, "%.80s") is redacted to the end of the text
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
# A URL in running text: a scheme that starts a word, ":/", then up to whitespace, a double
# quote, an angle bracket, a backtick or a backslash (JSON's escapes: \" and \n end a URL as
# " and a newline do), less trailing punctuation of the text around it (". , ; : ! ? ) ] } '").
# Config refuses these characters in URLs (``config.base.Url``), so a configured URL is always
# one match, in raw text and in JSON alike. The first look-behind keeps the scan linear.
_URL = re.compile(r"(?<![A-Za-z])[A-Za-z][A-Za-z0-9+.-]{0,31}:/[^\s\"<>`\\]*(?<![.,;:!?)\]}'])")
_URL_BREAK = re.compile(r"[\s\"<>`\\]")
_HEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+")
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]*)(?::[0-9]*)?")


def looks_like_pem(text: str) -> bool:
    """True if ``text`` holds a PEM header (``-----BEGIN ...-----``): key or certificate text."""
    return _PEM_BEGIN.search(text) is not None


def breaks_url(url: str) -> bool:
    """True if ``url`` holds a character that ends a URL in running text (whitespace, ``"``,
    ``<``, ``>``, a backtick, a backslash): ``redact`` would then find only part of it."""
    return _URL_BREAK.search(url) is not None


def _index(text: str, chars: str, end: int) -> int:
    """Index of the first of ``chars`` in ``text[:end]``, or ``end``."""
    found = [i for i in (text.find(c, 0, end) for c in chars) if i >= 0]
    return min(found, default=end)


def _param(param: str) -> str:
    name, eq, value = param.partition("=")
    if not eq:
        return URL_MARK if param else param
    return f"{name}={URL_MARK if value else ''}"


def redact_url(url: str) -> str:
    """``url`` with its userinfo, query values and fragment replaced by ``***``.

    ``rtsp://admin:pw@cam:554/live?token=t`` -> ``rtsp://***@cam:554/live?token=***``.
    Text that does not start with ``scheme:/`` is returned unchanged.
    """
    head = _HEAD.match(url)
    if head is None:
        return url
    rest = url[head.end() :]
    # userinfo ends at the last "@" before the query: a password may hold "@" or "/"
    end = _index(rest, "?#", len(rest))
    at = rest.rfind("@", 0, end)
    user = ""
    if at >= 0:
        user, rest, end = URL_MARK + "@", rest[at + 1 :], end - at - 1
    authority = rest[: _index(rest, "/", end)]
    if _HOST_PORT.fullmatch(authority) is None:
        return head.group() + URL_MARK  # "user:pa?ss@host": cannot tell where secrets end
    query, hashmark, fragment = rest[end:].partition("#")
    if query:
        query = "?" + "&".join(_param(p) for p in query[1:].split("&"))
    tail = f"#{URL_MARK if fragment else ''}" if hashmark else ""
    return head.group() + user + rest[:end] + query + tail


def redact(text: str) -> str:
    """``text`` with every PEM block and every URL's secrets (see ``redact_url``) hidden."""
    if "-----BEGIN " in text:
        text = _PEM.sub(_PEM_MARK, text)
    if ":/" in text:
        text = _URL.sub(lambda m: redact_url(m.group()), text)
    return text


class RedactingStream:
    """A text stream that writes ``redact(text)`` of each ``write`` to ``target``.

    Redaction works per write: every message the project prints is one ``print`` (one write
    of the whole text), so a secret is never split across two writes. ``target`` stays owned
    by the caller, except that ``close()`` closes it (a broken pipe closes stderr). Not an
    ``io.IOBase``: that would close ``target`` when the wrapper is garbage-collected.
    """

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(redact(text))
        return len(text)

    def flush(self) -> None:
        if not self.target.closed:
            self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:
        return self.target.encoding

    @property
    def errors(self) -> str | None:
        return self.target.errors

    @property
    def closed(self) -> bool:
        return self.target.closed

    def close(self) -> None:
        self.target.close()


@contextmanager
def redacted_output() -> Iterator[None]:
    """Within the block, ``sys.stdout`` and ``sys.stderr`` pass every write through ``redact``.

    Used by the command-line entry points around everything they do (argument errors, log
    handlers created inside, error lines, summaries). The previous streams are put back on
    exit, flushed first.
    """
    saved = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, RedactingStream(saved[0]))
    sys.stderr = cast(TextIO, RedactingStream(saved[1]))
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if not stream.closed:
                stream.flush()
        sys.stdout, sys.stderr = saved
