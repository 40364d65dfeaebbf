"""The outbox's write-ahead log (``<db>-wal``), read without SQLite.

SQLite replays a WAL frame by frame and stops at the first frame whose checksum (cumulative over
every earlier frame) does not match, or whose salt is not the log header's; it also ignores a
log whose header is damaged. Commits after such a frame are dropped *silently*: the database
opens, ``PRAGMA quick_check`` says ``ok``, and the events (and the ``last_seq``) of those commits
are gone. The first write after that overwrites the frames, so the evidence goes too.

``scan_wal`` checks each frame on its own instead, against the checksum stored in the frame
before it, so a damaged frame does not condemn the frames after it. ``WalScan.problem`` says
when committed frames would be dropped (then the outbox must be salvaged before SQLite writes
to it), and ``WalScan.frames`` is every usable committed frame, for ``pages.PageImage``. A torn
tail (frames of a transaction that never committed, as after a power cut) is not a problem:
nothing in it was ever stored.

Frame format: https://www.sqlite.org/fileformat2.html#walformat (all integers big-endian; the
checksum reads 32-bit words in the byte order the magic number names).
"""

from __future__ import annotations

__all__ = ["WalScan", "scan_wal", "valid_page_size"]

import array
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_MAGIC_LE, _MAGIC_BE = 0x377F0682, 0x377F0683
_VERSION = 3007000
_HEADER = 32
_FRAME_HEADER = 24
_MASK = 0xFFFFFFFF


def valid_page_size(size: int) -> bool:
    """True for the page sizes SQLite allows (a power of two, 512..65536 bytes)."""
    return 512 <= size <= 65536 and size & (size - 1) == 0


def _checksum(data: bytes, s1: int, s2: int, big: bool) -> tuple[int, int]:
    words = array.array("I")
    words.frombytes(data)
    if big != (sys.byteorder == "big"):
        words.byteswap()
    pairs = iter(words)
    for a, b in zip(pairs, pairs, strict=True):
        s1 = (s1 + a + s2) & _MASK
        s2 = (s2 + b + s1) & _MASK
    return s1, s2


@dataclass(frozen=True, slots=True)
class WalScan:
    """What a scan of a WAL file found. Frame numbers count from 1, as SQLite's do."""

    page_size: int = 0
    frames: dict[int, int] = field(default_factory=dict)
    """Page number -> file offset of the page image in the newest usable committed frame."""
    db_pages: int = 0
    """Database size in pages after the last usable commit (0: the log holds no commit)."""
    replayed: int = 0
    """Frames SQLite itself replays (up to its last valid commit)."""
    damaged: tuple[int, ...] = ()
    """Frames that fail their checksum or salt, before the last usable commit."""
    dropped_commits: int = 0
    """Valid commits SQLite would drop because an earlier frame (or the header) is damaged."""
    header_ok: bool = True

    @property
    def problem(self) -> str | None:
        """Why SQLite would lose committed data from this log, or None if it would not."""
        if not self.dropped_commits:
            return None
        if not self.header_ok:
            where = "its header is damaged"
        else:
            shown = ", ".join(str(n) for n in self.damaged[:5])
            more = f" and {len(self.damaged) - 5} more" if len(self.damaged) > 5 else ""
            where = f"frame(s) {shown}{more} fail their checksum"
        return (
            f"the write-ahead log is damaged: {where}, so SQLite would drop the "
            f"{self.dropped_commits} committed transaction(s) after it"
        )


def scan_wal(path: Path, page_size_hint: int = 0) -> WalScan:
    """Scan the WAL at ``path`` (absent or empty: an empty ``WalScan``). ``page_size_hint``
    (bytes, from the database header) is used when the log's own header is damaged."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return WalScan()
    with fh:
        head = fh.read(_HEADER)
        if len(head) < _HEADER:
            return WalScan()
        return _scan(fh, head, page_size_hint)


def _scan(fh: BinaryIO, head: bytes, hint: int) -> WalScan:
    magic, version, page_size, _, salt1, salt2, c1, c2 = struct.unpack(">8I", head)
    big = magic == _MAGIC_BE
    header_ok = (
        magic in (_MAGIC_LE, _MAGIC_BE)
        and version == _VERSION
        and valid_page_size(page_size)
        and _checksum(head[:24], 0, 0, big) == (c1, c2)
    )
    if not header_ok:
        page_size = page_size if valid_page_size(page_size) else hint
        if not valid_page_size(page_size):
            return WalScan(header_ok=False)
    salts: tuple[int, int] | None = (salt1, salt2) if header_ok else None
    orders = (big,) if header_ok else (True, False)
    prev = (c1, c2)
    # (frame number, page number, commit size, usable, offset of the page image)
    seen: list[tuple[int, int, int, bool, int]] = []
    offset, number = _HEADER, 0
    while True:
        frame = fh.read(_FRAME_HEADER + page_size)
        if len(frame) < _FRAME_HEADER + page_size:
            break
        number += 1
        pgno, commit, f1, f2, k1, k2 = struct.unpack(">6I", frame[:_FRAME_HEADER])
        if salts is None:
            salts = (f1, f2)  # a damaged header: the first frame's salt names the generation
        body = frame[:8] + frame[_FRAME_HEADER:]
        ok = (f1, f2) == salts and pgno > 0
        if ok:
            match = [b for b in orders if _checksum(body, prev[0], prev[1], b) == (k1, k2)]
            ok = bool(match)
            if ok and len(orders) > 1:
                orders = (match[0],)  # the byte order is settled by the first good frame
        seen.append((number, pgno, commit, ok, offset + _FRAME_HEADER))
        prev = (k1, k2)
        offset += _FRAME_HEADER + page_size
    return _summarise(seen, page_size, header_ok)


def _summarise(
    seen: list[tuple[int, int, int, bool, int]], page_size: int, header_ok: bool
) -> WalScan:
    commits = [i for i, (_, _, commit, ok, _) in enumerate(seen) if ok and commit]
    if not commits:
        return WalScan(page_size=page_size, header_ok=header_ok)
    last = commits[-1]
    # SQLite's own replay: the unbroken run of good frames from the start, to its last commit.
    replayed = 0
    if header_ok:
        for i, (_, _, commit, ok, _) in enumerate(seen):
            if not ok:
                break
            if commit:
                replayed = i + 1
    frames: dict[int, int] = {}
    damaged: list[int] = []
    for number, pgno, _, ok, at in seen[: last + 1]:
        if ok:
            frames[pgno] = at  # a later frame holds the newer image of its page
        else:
            damaged.append(number)
    return WalScan(
        page_size=page_size,
        frames=frames,
        db_pages=seen[last][2],
        replayed=replayed,
        damaged=tuple(damaged),
        dropped_commits=sum(1 for i in commits if i >= replayed),
        header_ok=header_ok,
    )
