"""A damaged SQLite file read page by page, without SQLite: the reader behind salvage.

SQLite refuses a whole query when one page on its path is damaged: a bad interior page hides
every row below it, a bad file header the whole file. Salvage needs the opposite, so this module
reads the file format itself (https://www.sqlite.org/fileformat2.html): ``PageImage`` is the
database as SQLite would see it (file pages overlaid by the usable WAL frames, see ``wal``),
``btree_page`` parses one b-tree page, ``record`` decodes one row. Every inconsistency raises
``DamageError`` for the page (or cell) at hand, so the caller loses only what is on it.

Read-only: nothing here writes to the files it reads. ``PageImage`` owns its file handles
(``close`` or ``with``).
"""

from __future__ import annotations

__all__ = [
    "INDEX_INTERIOR",
    "INDEX_LEAF",
    "TABLE_INTERIOR",
    "TABLE_LEAF",
    "BTreePage",
    "Cell",
    "DamageError",
    "PageImage",
    "Value",
    "btree_page",
    "header_page_size",
    "payload",
    "record",
]

import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from edge_app.outbox.wal import WalScan, scan_wal, valid_page_size

_MAGIC = b"SQLite format 3\x00"
TABLE_LEAF, TABLE_INTERIOR, INDEX_LEAF, INDEX_INTERIOR = 0x0D, 0x05, 0x0A, 0x02
# Page sizes tried, most likely first, when the header that names it is damaged.
_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)

Value = int | float | str | bytes | None
"""A column value as stored: SQLite's five storage classes."""


class DamageError(Exception):
    """A page, cell or record is not what the file format allows (internal to salvage)."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell of a b-tree page: ``child`` page (interior pages), ``key`` (the rowid, on
    table pages), and the payload: ``size`` bytes in all, ``local`` of them on the page, the
    rest on the overflow chain starting at page ``overflow`` (0: none)."""

    child: int
    key: int
    size: int
    local: bytes
    overflow: int


@dataclass(frozen=True, slots=True)
class BTreePage:
    """One parsed b-tree page: its type byte, its cells, and an interior page's right-most
    child (0 on leaves)."""

    kind: int
    cells: tuple[Cell, ...]
    right: int

    @property
    def leaf(self) -> bool:
        return self.kind in (TABLE_LEAF, INDEX_LEAF)

    @property
    def children(self) -> list[int]:
        """The child pages of an interior page, left to right (empty on leaves)."""
        if self.kind not in (TABLE_INTERIOR, INDEX_INTERIOR):
            return []
        return [c.child for c in self.cells] + [self.right]


class PageImage:
    """The pages of the database at ``db`` with its ``-wal`` applied as far as it is usable."""

    def __init__(self, db: Path) -> None:
        """Raises ``OSError`` if ``db`` cannot be read; damage never raises here."""
        self._wal: BinaryIO | None = None
        self._file: BinaryIO = db.open("rb")
        try:
            self._load(db)
        except BaseException:
            self.close()
            raise

    def _load(self, db: Path) -> None:
        size = self._file.seek(0, 2)
        self._file.seek(0)
        main = header_page_size(self._file.read(100))
        wal_path = db.with_name(db.name + "-wal")
        self.wal: WalScan = scan_wal(wal_path, main)
        self.page_size = self.wal.page_size or main or self._guess_page_size()
        if self.wal.frames:
            self._wal = wal_path.open("rb")
        self.usable = self.page_size
        self.pages = size // self.page_size
        """Pages in the database (the last commit's size, else the header's or the file's)."""
        self.freelist: set[int] | None = None
        """Pages on the freelist (their old rows are not live); None: not known (damage)."""
        try:
            first = self.page(1)
        except DamageError:
            first = b""
        self.header_ok = _sane_header(first, self.page_size)
        if self.header_ok:
            self.usable = self.page_size - first[20]
            counter, valid_for, count = _u32(first, 24), _u32(first, 92), _u32(first, 28)
            if count and counter == valid_for:
                self.pages = count
        if self.wal.db_pages:
            self.pages = self.wal.db_pages
        if self.header_ok:
            self.freelist = self._read_freelist(_u32(first, 32), _u32(first, 36))

    def close(self) -> None:
        self._file.close()
        if self._wal is not None:
            self._wal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def page(self, number: int) -> bytes:
        """Page ``number`` (from 1), its newest usable image; ``DamageError`` if out of range."""
        if not 1 <= number <= max(self.pages, 1):
            raise DamageError(f"page {number} is outside the file ({self.pages} pages)")
        at = self.wal.frames.get(number)
        if at is not None and self._wal is not None:
            self._wal.seek(at)
            data = self._wal.read(self.page_size)
        else:
            self._file.seek((number - 1) * self.page_size)
            data = self._file.read(self.page_size)
        if len(data) != self.page_size:
            raise DamageError(f"page {number} is cut short")
        return data

    def _guess_page_size(self) -> int:
        """The page size under which the most of pages 2..9 start like b-tree pages."""

        def score(size: int) -> int:
            hits = 0
            for n in range(2, 10):
                self._file.seek((n - 1) * size)
                data = self._file.read(size)
                if len(data) < size:
                    break
                try:
                    btree_page(data, n, size)
                    hits += 1
                except DamageError:
                    pass
            return hits

        return max(_SIZES, key=score)  # ties go to the earlier (more likely) size

    def _read_freelist(self, trunk: int, count: int) -> set[int] | None:
        pages: set[int] = set()
        while trunk:
            if trunk in pages or len(pages) > self.pages:
                return None  # a loop: the chain is damaged
            try:
                data = self.page(trunk)
            except DamageError:
                return None
            pages.add(trunk)
            n = _u32(data, 4)
            if n > self.usable // 4 - 2:
                return None
            pages.update(_u32(data, 8 + 4 * i) for i in range(n))
            trunk = _u32(data, 0)
        return pages if len(pages) == count else None


def header_page_size(head: bytes) -> int:
    """The page size (bytes) a file header names, 0 if the header is damaged."""
    if len(head) < 18 or head[:16] != _MAGIC:
        return 0
    size = _u16(head, 16)
    size = 65536 if size == 1 else size
    return size if valid_page_size(size) else 0


def _sane_header(first: bytes, page_size: int) -> bool:
    """True if page 1 starts with an undamaged file header for pages of ``page_size`` bytes:
    the magic string, that page size, a usable size SQLite accepts (>= 480 bytes) and the
    fixed payload fractions (64, 32, 32)."""
    return (
        len(first) >= 100
        and header_page_size(first) == page_size
        and page_size - first[20] >= 480
        and first[21:24] == b"\x40\x20\x20"
    )


def btree_page(data: bytes, number: int, usable: int) -> BTreePage:
    """Parse ``data``, page ``number`` (page 1 starts after the 100-byte file header), whose
    first ``usable`` bytes hold b-tree content."""
    base = 100 if number == 1 else 0
    if len(data) < base + 12:
        raise DamageError(f"page {number} is too short")
    kind = data[base]
    if kind not in (TABLE_LEAF, TABLE_INTERIOR, INDEX_LEAF, INDEX_INTERIOR):
        raise DamageError(f"page {number} is not a b-tree page (type byte {kind})")
    interior = kind in (TABLE_INTERIOR, INDEX_INTERIOR)
    count = _u16(data, base + 3)
    pointers = base + (12 if interior else 8)
    if pointers + 2 * count > usable:
        raise DamageError(f"page {number}: {count} cells cannot fit")
    cells = []
    for i in range(count):
        at = _u16(data, pointers + 2 * i)
        if not pointers + 2 * count <= at < usable:
            raise DamageError(f"page {number}: cell {i} points outside the page")
        cells.append(_cell(data, kind, at, usable))
    return BTreePage(kind, tuple(cells), _u32(data, base + 8) if interior else 0)


def _cell(data: bytes, kind: int, at: int, usable: int) -> Cell:
    child = 0
    if kind in (TABLE_INTERIOR, INDEX_INTERIOR):
        child, at = _u32(data, at), at + 4
    if kind == TABLE_INTERIOR:
        key, _ = _varint(data, at)
        return Cell(child, key, 0, b"", 0)
    size, at = _varint(data, at)
    key = 0
    if kind == TABLE_LEAF:
        key, at = _varint(data, at)
    if size < 0:
        raise DamageError("a cell's payload size is negative")
    local = _local_size(size, usable, table=kind == TABLE_LEAF)
    if at + local + (4 if local < size else 0) > usable:
        raise DamageError("a cell runs past its page")
    overflow = _u32(data, at + local) if local < size else 0
    return Cell(child, key, size, data[at : at + local], overflow)


def payload(image: PageImage, cell: Cell, visited: set[int]) -> bytes:
    """``cell``'s whole payload, following its overflow chain through ``image``; the overflow
    pages read are added to ``visited`` (a page seen twice means a damaged chain)."""
    if not cell.overflow:
        return cell.local
    parts, left, page = [cell.local], cell.size - len(cell.local), cell.overflow
    while left > 0:
        if page == 0 or page in visited:
            raise DamageError("a cell's overflow chain is broken")
        visited.add(page)
        data = image.page(page)
        chunk = data[4 : image.usable][:left]
        parts.append(chunk)
        left -= len(chunk)
        page = _u32(data, 0)
    return b"".join(parts)


def _local_size(size: int, usable: int, *, table: bool) -> int:
    """Bytes of a payload of ``size`` bytes kept on the b-tree page (file format 1.6)."""
    most = usable - 35 if table else (usable - 12) * 64 // 255 - 23
    if size <= most:
        return size
    least = (usable - 12) * 32 // 255 - 23
    keep = least + (size - least) % (usable - 4)
    return keep if keep <= most else least


def record(payload: bytes) -> tuple[Value, ...]:
    """The column values of one record (a row, or an index entry with its rowid last)."""
    header, at = _varint(payload, 0)
    if not 0 < header <= len(payload):
        raise DamageError("a record header runs past its payload")
    types = []
    while at < header:
        kind, at = _varint(payload, at)
        types.append(kind)
    if at != header:
        raise DamageError("a record header is malformed")
    values: list[Value] = []
    for kind in types:
        value, at = _value(payload, at, kind)
        values.append(value)
    if at != len(payload):
        raise DamageError("a record's values do not fill its payload")
    return tuple(values)


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _value(data: bytes, at: int, kind: int) -> tuple[Value, int]:
    if kind == 0:
        return None, at
    if kind in _INT_SIZES:
        n = _INT_SIZES[kind]
        if at + n > len(data):
            raise DamageError("an integer runs past its record")
        return int.from_bytes(data[at : at + n], "big", signed=True), at + n
    if kind == 7:
        if at + 8 > len(data):
            raise DamageError("a real runs past its record")
        return struct.unpack(">d", data[at : at + 8])[0], at + 8
    if kind in (8, 9):
        return kind - 8, at
    if kind < 12:
        raise DamageError(f"serial type {kind} is reserved")
    n = (kind - 12) // 2
    if at + n > len(data):
        raise DamageError("a text or blob runs past its record")
    raw = data[at : at + n]
    if kind % 2 == 0:
        return raw, at + n
    try:
        return raw.decode("utf-8"), at + n
    except UnicodeDecodeError as exc:
        raise DamageError(f"text is not UTF-8: {exc}") from exc


def _varint(data: bytes, at: int) -> tuple[int, int]:
    if at < len(data) and data[at] < 0x80:
        return data[at], at + 1  # most are one byte: serial types, small sizes
    value = 0
    for i in range(9):
        if at + i >= len(data):
            raise DamageError("a varint runs past its page")
        byte = data[at + i]
        if i == 8:
            value = (value << 8) | byte
            break
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    if value >= 1 << 63:
        value -= 1 << 64
    return value, at + i + 1


def _u16(data: bytes, at: int) -> int:
    if at + 2 > len(data):
        raise DamageError("a 2-byte field runs past its page")
    return int.from_bytes(data[at : at + 2], "big")


def _u32(data: bytes, at: int) -> int:
    if at + 4 > len(data):
        raise DamageError("a 4-byte field runs past its page")
    return int.from_bytes(data[at : at + 4], "big")
