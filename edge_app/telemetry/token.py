"""The health endpoint's bearer token: read once at start, compared in constant time.

The token comes from ``health.token_file`` (a file only its owner may read) or from the
environment variable named by ``health.token_env``. It is never logged, printed or put in an
error message: problems name the file or the variable, never what they hold.
"""

from __future__ import annotations

__all__ = ["MIN_TOKEN_CHARS", "BearerToken", "load_token"]

import hmac
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from edge_app.config import HealthConfig
from edge_app.errors import ConfigError, FieldError

MIN_TOKEN_CHARS = 16
"""Shortest token accepted: 16 random URL-safe characters are about 96 bits."""

# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_MAX_FILE_BYTES = 4096
_HOW = "generate one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"


class BearerToken:
    """A secret the HTTP endpoint checks on every request; its ``repr`` hides the value."""

    __slots__ = ("_secret",)

    def __init__(self, value: str) -> None:
        """Raises ``ValueError`` (without the value) unless ``value`` is a b64token of at
        least ``MIN_TOKEN_CHARS`` characters."""
        if len(value) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(value):
            raise ValueError(
                f"a bearer token is at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 "
                f"- . _ ~ + / (then optional '='); {_HOW}"
            )
        self._secret = value.encode("ascii")

    def matches(self, authorization: str | None) -> bool:
        """True when an ``Authorization`` header value is ``Bearer <this token>``."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        presented = credentials.strip().encode("latin-1", "replace")
        # compare_digest first, whatever the scheme: the time taken says nothing about the token
        same = hmac.compare_digest(presented, self._secret)
        return same and scheme.lower() == "bearer"

    def authorization(self) -> str:
        """The ``Authorization`` header value a client sends (``edge-app health``); it holds
        the secret, so it goes into a request header and nowhere else."""
        return f"Bearer {self._secret.decode('ascii')}"

    def __repr__(self) -> str:
        return "BearerToken(<redacted>)"


def load_token(
    health: HealthConfig, environ: Mapping[str, str] | None = None
) -> BearerToken | None:
    """The configured token, or ``None`` when neither ``token_file`` nor ``token_env`` is set.

    ``environ`` defaults to ``os.environ``. Raises ``ConfigError`` naming the field when the
    file is missing, not a regular file, readable by group or others, or holds no valid token,
    or when the variable is unset or invalid.
    """
    if health.token_file is not None:
        path = health.token_file
        return _checked("health.token_file", str(path), _read_file(path))
    if health.token_env is not None:
        name = health.token_env
        value = (os.environ if environ is None else environ).get(name, "").strip()
        if not value:
            why = f"environment variable {name} is not set or empty; export the token in it"
            raise ConfigError("health endpoint token", [FieldError("health.token_env", why)])
        return _checked("health.token_env", f"environment variable {name}", value)
    return None


def _read_file(path: Path) -> str:
    def refuse(why: str) -> ConfigError:
        return ConfigError(str(path), [FieldError("health.token_file", why)])

    try:
        # O_NONBLOCK: a FIFO put in the token's place must not hang the start
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(
            f"cannot open the token file: {exc.strerror}; {_HOW}, write it there and "
            f"chmod 600 {path}"
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refuse("not a regular file; point health.token_file at the token's file")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise refuse(f"mode {mode:04o} lets group or others read the token; chmod 600 {path}")
        data = os.read(fd, _MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read the token file: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > _MAX_FILE_BYTES:
        raise refuse(f"larger than {_MAX_FILE_BYTES} bytes; it must hold the token alone")
    return data.decode("ascii", "replace").strip()


def _checked(field: str, source: str, value: str) -> BearerToken:
    try:
        return BearerToken(value)
    except ValueError as exc:
        # The message describes the rule, never the rejected value.
        raise ConfigError(source, [FieldError(field, str(exc))]) from exc
