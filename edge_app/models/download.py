"""Fetching an offered file: resumable, bandwidth-capped, size-capped, verified.

The bytes stream into ``<folder>/<sha256>.part`` (0600). After a dropped connection, or a
restart of the daemon, the next request asks for the rest with ``Range: bytes=<have>-``; a
server that ignores the Range (answers 200) is read from the start again. The file must come
to exactly the offered size and sha256; only then is it renamed into place (atomically, in
the same folder). Only URLs the caller allows are read, redirects included (``allowed``: the
local config's prefixes). stdlib ``urllib`` only: no new dependency on the device.
"""

from __future__ import annotations

__all__ = ["STALE_PART_S", "DownloadError", "DownloadStats", "TokenBucket", "download"]

import errno
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edge_app.errors import ChecksumMismatchError, ModelError
from edge_app.files import private_dir
from edge_app.models.catalog import sha256_file

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
"""Bytes read per call (and the token bucket's largest single take)."""


class DownloadError(ModelError):
    """A download that cannot complete: HTTP error, truncation, too big, disk full, URL not
    allowed. The message says which and what to do."""


class TokenBucket:
    """A bandwidth cap: ``take(n)`` blocks until ``n`` bytes fit under ``rate`` bytes/s
    (bursts up to ``burst`` bytes, default one read's worth, so even a short download keeps
    to the cap on average). ``monotonic``/``sleep`` are
    the seam a test drives; ``waited_s`` sums the time spent sleeping."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else CHUNK)
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = self.burst
        self._at = monotonic()
        self.taken = 0
        self.waited_s = 0.0

    def take(self, n: int) -> None:
        """Account for ``n`` bytes, sleeping first while the bucket holds too few tokens
        (one sleep, of the exact shortfall: no loop that float rounding could keep going)."""
        self._refill()
        need = min(n, self.burst)
        if self._tokens < need:
            wait = (need - self._tokens) / self.rate
            self.waited_s += wait
            self._sleep(wait)
            self._refill()
        self._tokens -= n  # may go negative for n > burst: the next take waits longer
        self.taken += n

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now


@dataclass(slots=True)
class DownloadStats:
    """What one ``download`` did: requests made, how many asked for a Range (resumes), bytes
    received over the network, seconds it took."""

    requests: int = 0
    ranged: int = 0
    fetched: int = 0
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)


class _RestartError(Exception):
    """The server ignored our Range: read again from byte 0."""


class _DroppedError(Exception):
    """The connection ended early; resume if retries are left."""


def download(
    url: str,
    *,
    sha256: str,
    size: int,
    folder: Path,
    allowed: Callable[[str], bool],
    max_bytes: int,
    timeout_s: float = 30.0,
    retries: int = 5,
    bucket: TokenBucket | None = None,
    suffix: str = "",
    progress: Callable[[int, int], None] | None = None,
    stats: DownloadStats | None = None,
) -> Path:
    """Fetch ``url`` into ``folder/<sha256><suffix>`` and return that path; a file already
    there with that digest is returned as it is. ``progress(have, size)`` is called as bytes
    arrive. Raises ``DownloadError`` (or ``ChecksumMismatchError``), leaving a partial file
    only when a later call could resume it."""
    stats = stats if stats is not None else DownloadStats()
    if not allowed(url):
        raise DownloadError(
            f"{url} is not under any of model_updates.allowed_urls: add its prefix to the "
            "local config to allow downloads from there"
        )
    if size > max_bytes:
        raise DownloadError(
            f"offered file is {size} bytes, more than model_updates.max_bytes ({max_bytes})"
        )
    try:
        folder = private_dir(folder)
    except OSError as exc:
        raise DownloadError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    final = folder / f"{sha256}{suffix}"
    if final.is_file() and sha256_file(final) == sha256:
        return final
    part = folder / f"{sha256}.part"
    _prune_parts(folder, keep=part)
    fetch = _Fetch(url, size, allowed, timeout_s, bucket, progress, stats)
    started = time.monotonic()
    attempt = 0
    while True:
        have = _part_size(part, size)
        if have == size:
            break
        try:
            fetch.once(part, have)
        except (_RestartError, _DroppedError) as exc:
            if isinstance(exc, _RestartError):
                part.unlink(missing_ok=True)  # what we hold does not continue what is there
            attempt += 1
            if attempt > retries:
                got = _part_size(part, size)
                raise DownloadError(
                    f"download of {url} stopped at {got} of {size} bytes after {retries} "
                    f"resume(s) ({exc}); the part is kept and the next offer resumes it"
                ) from exc
            log.info("download of %s dropped at %d bytes (%s); resuming", url, have, exc)
    stats.seconds = time.monotonic() - started
    digest = sha256_file(part)
    if digest != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{url} has sha256 {digest}, the offer says {sha256}: not used (deleted); check "
            "the offer's sha256 or the file on the server"
        )
    os.replace(part, final)
    return final


STALE_PART_S = 7 * 86400.0
"""A partial download untouched this long belongs to an offer nobody repeated: deleted."""


def _prune_parts(folder: Path, *, keep: Path) -> None:
    """Delete other offers' ``.part`` files left for longer than ``STALE_PART_S`` (a resume
    is only worth its disk space while the offer may come again)."""
    cutoff = time.time() - STALE_PART_S
    for old in folder.glob("*.part"):
        try:
            if old != keep and old.lstat().st_mtime < cutoff:
                old.unlink()
                log.info("deleted %s: a partial download untouched for 7 days", old.name)
        except OSError:
            continue  # gone meanwhile, or not ours to delete: harmless either way


def _part_size(part: Path, size: int) -> int:
    try:
        have = part.stat().st_size
    except FileNotFoundError:
        return 0
    if have > size:  # not ours to resume
        part.unlink()
        return 0
    return have


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an allowed URL."""

    def __init__(self, allowed: Callable[[str], bool]) -> None:
        self._allowed = allowed

    def redirect_request(  # noqa: PLR0917  # urllib's signature
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if not self._allowed(newurl):
            raise DownloadError(
                f"{req.full_url} redirects to {newurl}, which is not under "
                "model_updates.allowed_urls; offer the final URL or allow its prefix"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass(slots=True)
class _Fetch:
    """The requests of one download."""

    url: str
    size: int
    allowed: Callable[[str], bool]
    timeout_s: float
    bucket: TokenBucket | None
    progress: Callable[[int, int], None] | None
    stats: DownloadStats

    def once(self, part: Path, have: int) -> None:
        """One request: append what it brings to ``part`` from byte ``have``."""
        url, stats = self.url, self.stats
        if not url.startswith(("https://", "http://")):
            raise DownloadError(f"{url}: only http(s) URLs are read")
        headers = {"Range": f"bytes={have}-"} if have else {}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310  # scheme checked
        opener = urllib.request.build_opener(_Redirects(self.allowed))
        stats.requests += 1
        if have:
            stats.ranged += 1
            stats.resumed_from.append(have)
        try:
            response = opener.open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                raise _RestartError() from exc  # what we hold does not fit the file there
            if exc.code >= 500 or exc.code == 429:
                raise _DroppedError(f"HTTP {exc.code} {exc.reason}") from exc
            raise DownloadError(
                f"{url} answered HTTP {exc.code} {exc.reason}: check the offer's URL (and "
                "that the file is published there)"
            ) from exc
        except urllib.error.URLError as exc:
            raise _DroppedError(f"cannot connect: {exc.reason}") from exc
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _DroppedError(str(exc) or type(exc).__name__) from exc
        with response:
            if have and response.status != 206:
                log.info(
                    "%s ignored the Range request (HTTP %d): starting over", url, response.status
                )
                raise _RestartError()
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                os.close(fd)
                with part.open("ab" if have else "wb") as out:
                    self._copy(response, out, have)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DownloadError(
                        f"disk full while downloading {url} into {part.parent}: free space "
                        f"(need {self.size - have} more bytes) and offer it again"
                    ) from exc
                raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc

    def _copy(self, response: Any, out: IO[bytes], have: int) -> None:
        size, stats = self.size, self.stats
        while have < size:
            want = min(CHUNK, size - have + 1)  # one byte more shows an overlong body
            if self.bucket is not None:
                self.bucket.take(want)
            try:
                block = response.read(want)
            except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
                out.flush()
                raise _DroppedError(str(exc) or type(exc).__name__) from exc
            if not block:
                out.flush()
                raise _DroppedError(f"connection closed at {have} of {size} bytes (truncated)")
            if have + len(block) > size:
                raise DownloadError(
                    f"{self.url} is longer than the offered {size} bytes: check the offer's size"
                )
            out.write(block)
            have += len(block)
            stats.fetched += len(block)
            if self.progress is not None:
                self.progress(have, size)
