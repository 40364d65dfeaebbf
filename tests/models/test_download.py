"""Downloads of offered files against a real HTTP server (``simulator.files``): resume with
Range after a dropped connection or a restart, a server that ignores Range, HTTP errors,
truncation, hash and size checks, allowed prefixes, and the bandwidth cap's accounting."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.config import ModelUpdatesConfig
from edge_app.errors import ChecksumMismatchError
from edge_app.models.download import (
    STALE_PART_S,
    DownloadError,
    DownloadStats,
    TokenBucket,
    download,
)
from simulator.files import FileServer

SIZE = 300_000


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FileServer, bytes]]:
    folder = tmp_path / "www"
    folder.mkdir()
    data = os.urandom(SIZE)
    (folder / "m.tflite").write_bytes(data)
    with FileServer(folder) as server:
        yield server, data


def fetch(
    server: FileServer, data: bytes, into: Path, stats: DownloadStats | None = None, **kw: object
) -> Path:
    args: dict[str, object] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "folder": into,
        "allowed": lambda url: url.startswith(server.base),
        "max_bytes": 10_000_000,
        "timeout_s": 10.0,
        "stats": stats,
    }
    args.update(kw)
    return download(server.url("m.tflite"), **args)  # type: ignore[arg-type]


def test_a_download_lands_verified_private_and_atomically(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    path = fetch(server, data, tmp_path / "dl", suffix=".tflite")
    assert path.read_bytes() == data
    assert path.name == hashlib.sha256(data).hexdigest() + ".tflite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list((tmp_path / "dl").glob("*.part"))
    again = DownloadStats()
    assert fetch(server, data, tmp_path / "dl", again, suffix=".tflite") == path
    assert again.requests == 0  # already there with that digest


def test_a_dropped_connection_resumes_with_range(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    server.drop_after["m.tflite"] = 100_000
    stats = DownloadStats()
    path = fetch(server, data, tmp_path / "dl", stats)
    assert path.read_bytes() == data
    assert [r for _, r in server.requests] == [None, "bytes=100000-"]
    assert stats.ranged == 1
    assert stats.resumed_from == [100_000]
    assert stats.fetched == SIZE  # nothing fetched twice
    assert server.sent == SIZE


def test_a_restart_resumes_the_part_left_by_the_last_attempt(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    server.drop_after["m.tflite"] = 120_000
    with pytest.raises(DownloadError, match="stopped at 120000 of 300000 bytes"):
        fetch(server, data, tmp_path / "dl", retries=0)
    stats = DownloadStats()  # a new process: only the .part remains
    assert fetch(server, data, tmp_path / "dl", stats).read_bytes() == data
    assert server.requests[-1] == ("m.tflite", "bytes=120000-")
    assert stats.fetched == SIZE - 120_000


def test_a_server_that_ignores_range_is_read_from_the_start(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    server.drop_after["m.tflite"] = 50_000
    server.ignore_range = True
    stats = DownloadStats()
    assert fetch(server, data, tmp_path / "dl", stats).read_bytes() == data
    assert stats.fetched == 50_000 + SIZE
    assert [r for _, r in server.requests] == [None, "bytes=50000-", None]


@pytest.mark.parametrize(("code", "match"), [(404, "HTTP 404"), (403, "HTTP 403")])
def test_http_client_errors_are_clear_and_not_retried(
    served: tuple[FileServer, bytes], tmp_path: Path, code: int, match: str
) -> None:
    server, data = served
    server.status["m.tflite"] = code
    with pytest.raises(DownloadError, match=match):
        fetch(server, data, tmp_path / "dl")
    assert len(server.requests) == 1


def test_server_errors_are_retried_then_reported(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    server.status["m.tflite"] = 500
    with pytest.raises(DownloadError, match=r"after 2 resume\(s\) \(HTTP 500"):
        fetch(server, data, tmp_path / "dl", retries=2)
    assert len(server.requests) == 3


def test_a_truncated_body_is_refused_once_resumes_run_out(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    server.truncate.add("m.tflite")
    with pytest.raises(DownloadError, match="stopped at"):
        fetch(server, data, tmp_path / "dl", retries=1)
    final = tmp_path / "dl" / hashlib.sha256(data).hexdigest()
    assert not final.exists()


def test_a_hash_mismatch_is_refused_and_the_bytes_deleted(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    with pytest.raises(ChecksumMismatchError, match="the offer says"):
        fetch(server, data, tmp_path / "dl", sha256="0" * 64)
    assert list((tmp_path / "dl").iterdir()) == []


def test_size_cap_and_a_longer_body_are_refused(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    with pytest.raises(DownloadError, match=r"more than model_updates\.max_bytes"):
        fetch(server, data, tmp_path / "dl", max_bytes=1000)
    assert server.requests == []
    with pytest.raises(DownloadError, match="longer than the offered 1000 bytes"):
        fetch(server, data, tmp_path / "dl", size=1000)


def test_only_allowed_prefixes_are_read(tmp_path: Path, served: tuple[FileServer, bytes]) -> None:
    server, data = served
    settings = ModelUpdatesConfig(allowed_urls=["https://models.example.com/edge/"])
    with pytest.raises(DownloadError, match=r"not under any of model_updates\.allowed_urls"):
        fetch(server, data, tmp_path / "dl", allowed=settings.allows)
    assert server.requests == []
    assert not settings.allows("https://models.example.com.evil.net/edge/m.tflite")
    assert not settings.allows("http://models.example.com/edge/m.tflite")
    assert settings.allows("https://models.example.com/edge/m.tflite")


@pytest.mark.parametrize(
    "prefix", ["ftp://host/", "https://models.example.com", "https:///x/", "models.example.com/"]
)
def test_a_bad_prefix_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ModelUpdatesConfig(allowed_urls=[prefix])


class _Time:
    """A clock the bucket sleeps on without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_the_token_bucket_holds_the_rate() -> None:
    t = _Time()
    bucket = TokenBucket(100_000, burst=10_000, monotonic=t.monotonic, sleep=t.sleep)
    for _ in range(100):
        bucket.take(10_000)
    # 1 MB at 100 kB/s with a 10 kB burst: 9.9 s of sleeping
    assert bucket.taken == 1_000_000
    assert t.now == pytest.approx(9.9, rel=0.01)
    assert bucket.waited_s == pytest.approx(t.now)


def test_a_capped_download_takes_about_size_over_rate(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    bucket = TokenBucket(1_000_000, burst=65_536)
    started = time.monotonic()
    fetch(server, data, tmp_path / "dl", bucket=bucket)
    took = time.monotonic() - started
    # (300 kB - 64 kB burst) at 1 MB/s: at least ~0.23 s; loosely, never a timing goal
    assert took >= 0.2
    assert bucket.waited_s >= 0.2
    assert bucket.taken >= SIZE


def test_a_full_disk_is_a_clear_error_and_the_part_resumes_once_space_returns(
    served: tuple[FileServer, bytes], small_fs: Path
) -> None:
    server, data = served
    ballast = small_fs / "ballast"
    free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
    ballast.write_bytes(b"\0" * (free - 100_000))  # room for a third of the file
    with pytest.raises(DownloadError, match=r"disk full while downloading .* free space"):
        fetch(server, data, small_fs / "dl")
    part = small_fs / "dl" / (hashlib.sha256(data).hexdigest() + ".part")
    kept = part.stat().st_size
    assert 0 < kept < SIZE
    ballast.unlink()
    stats = DownloadStats()
    assert fetch(server, data, small_fs / "dl", stats).read_bytes() == data
    assert server.requests[-1] == ("m.tflite", f"bytes={kept}-")
    assert stats.fetched == SIZE - kept


def test_stale_parts_of_other_offers_are_deleted(
    served: tuple[FileServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    folder = tmp_path / "dl"
    folder.mkdir()
    stale, fresh = folder / ("a" * 64 + ".part"), folder / ("b" * 64 + ".part")
    for part in (stale, fresh):
        part.write_bytes(b"half a model")
    week_ago = time.time() - STALE_PART_S - 60
    os.utime(stale, (week_ago, week_ago))
    fetch(server, data, folder)
    assert not stale.exists()
    assert fresh.exists()  # its offer may come again and resume it
