"""Every readable row of a damaged outbox file, table by table (``scan_rows``).

Three passes over a ``pages.PageImage`` (the file with its usable WAL frames):

1. The schema, from the b-tree rooted at page 1 (it survives a damaged file header).
2. Each wanted table's b-tree from its root page, and, if it lost anything, its indexes. A
   damaged page loses the rows on it (and, for an interior page, the link to the pages below
   it); every other page is read. An index names the rowids its table held, so rows lost are
   counted, not guessed.
3. Only if a table with an ``INTEGER PRIMARY KEY`` (events, dead letters, lane rows) lost pages
   (or a WAL frame was skipped, so its tree may be an older image), or the schema itself is
   unreadable: every leaf page no tree reached (cut off below a damaged interior page) and not
   on the freelist, matched to that table by the shape of its rows.

A row counts only if its values fit its table's columns (storage class per declared type, NOT
NULL, the rowid alias stored as NULL) and the caller's ``take`` accepts it; a cell that does not
decode, fit or pass is *invalid*: its rowid is known, its content is not. Rows are handed to
``take`` as they are read, never all held at once (an outbox holds hundreds of megabytes).
Nothing here writes to the file. ``progress`` is called once per page visited, so a caller
can show that a long scan (seconds for a large outbox) is still moving.
"""

from __future__ import annotations

__all__ = ["Column", "Progress", "RowScan", "TableRows", "columns_of", "scan_rows"]

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_app.outbox.pages import (
    INDEX_INTERIOR,
    INDEX_LEAF,
    TABLE_INTERIOR,
    TABLE_LEAF,
    BTreePage,
    Cell,
    DamageError,
    PageImage,
    Value,
    btree_page,
    payload,
    record,
)
from edge_app.outbox.wal import WalScan


@dataclass(frozen=True, slots=True)
class Column:
    """One column as ``PRAGMA table_info`` describes it, reduced to what a stored value must
    satisfy: SQLite's affinity (``INTEGER``, ``REAL``, ``TEXT``, ``NUMERIC``, ``BLOB``)."""

    name: str
    affinity: str
    notnull: bool
    has_default: bool
    rowid: bool
    """The ``INTEGER PRIMARY KEY``: stored as NULL, its value is the cell's rowid."""

    def fits(self, value: Value) -> bool:
        if value is None:
            return self.rowid or not self.notnull
        if self.rowid:
            return False
        if self.affinity == "INTEGER":
            return type(value) is int
        if self.affinity == "REAL":
            return type(value) in (int, float)  # whole reals are stored as integers
        if self.affinity == "TEXT":
            return type(value) in (str, bytes)  # a blob is allowed in any column
        return True


def columns_of(conn: sqlite3.Connection, table: str) -> tuple[Column, ...]:
    """``table``'s columns in ``conn``'s database (empty if it has no such table)."""
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    keys = [row for row in info if row[5]]
    return tuple(
        Column(
            name=str(name),
            affinity=_affinity(str(kind)),
            notnull=bool(notnull),
            has_default=default is not None,
            rowid=bool(pk) and len(keys) == 1 and str(kind).upper() == "INTEGER",
        )
        for _, name, kind, notnull, default, pk in info
    )


def _affinity(declared: str) -> str:
    """SQLite's rules for a column's affinity from its declared type (datatype3.html 3.1)."""
    kind = declared.upper()
    if "INT" in kind:
        return "INTEGER"
    if any(word in kind for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in kind or not kind:
        return "BLOB"
    if any(word in kind for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def fits(values: Sequence[Value], columns: Sequence[Column]) -> bool:
    """True if ``values`` (a record) can be a row of a table with ``columns``. A record may be
    shorter than the table (columns added later take their default), never longer."""
    if not 0 < len(values) <= len(columns):
        return False
    if not all(c.fits(v) for c, v in zip(columns, values, strict=False)):
        return False
    return all(c.has_default or not c.notnull for c in columns[len(values) :])


@dataclass(slots=True)
class TableRows:
    """What was read of one table: the rowids of the rows taken, and what is known of the rest."""

    name: str
    columns: tuple[Column, ...]
    """The damaged file's own columns (its CREATE statement), else the target's."""
    seen: set[int] = field(default_factory=set)
    """Rowids of the rows handed to ``take`` and accepted."""
    invalid: set[int] = field(default_factory=set)
    """Rowids of cells found whose content did not decode, fit or pass ``take``."""
    complete: bool = False
    """Its whole b-tree was read: no page or cell of it was damaged."""
    indexed: set[int] = field(default_factory=set)
    """Rowids its indexes name (every row it held, if ``index_complete``)."""
    index_complete: bool = False
    """One of its indexes was read whole, so ``indexed`` lists every row it held."""

    @property
    def aliased(self) -> bool:
        """It has an ``INTEGER PRIMARY KEY``: its rowids mean something (seq, lane row id)."""
        return any(c.rowid for c in self.columns)

    def lost(self) -> set[int]:
        """Rowids known to have been stored whose rows could not be read."""
        return (self.indexed - self.seen) | (self.invalid - self.seen)


Take = Callable[[TableRows, int, tuple[Value, ...]], bool]
"""Receives one row read (its table, rowid and stored values, the rowid alias column None as on
disk); returns False to reject it as damaged. Each rowid of a table is offered until taken."""


@dataclass(slots=True)
class RowScan:
    """The result of ``scan_rows``."""

    tables: dict[str, TableRows]
    wal: WalScan
    header_ok: bool
    schema_ok: bool
    damaged_pages: list[int] = field(default_factory=list)
    """Pages reached through a tree that could not be read (damaged), in the order met."""
    orphan_rows: int = 0
    """Rows found on leaf pages cut off from their tree (pass 3)."""


Progress = Callable[[], None]
"""Called on the scanning thread once per page visited; must return quickly (it is on the
scan's path) and not raise."""


def _no_progress() -> None:
    pass


def scan_rows(
    path: Path,
    wanted: Mapping[str, tuple[Column, ...]],
    take: Take,
    *,
    progress: Progress | None = None,
) -> RowScan:
    """Read the tables ``wanted`` ({name: columns the salvaged rows go into}) from the damaged
    file ``path`` and its ``-wal``, handing each row to ``take`` and calling ``progress`` once
    per page visited. Raises ``OSError`` if the file cannot be read at all."""
    with PageImage(path) as image:
        reader = _Reader(image, progress or _no_progress)
        entries: list[tuple[Value, ...]] = []

        def keep(_: TableRows, __: int, values: tuple[Value, ...]) -> bool:
            entries.append(values)
            return True

        def sound(table: TableRows) -> bool:
            """Its tree was read whole, and no WAL frame was skipped (a page of it may then
            be an older image): nothing of it was lost."""
            return table.complete and not image.wal.damaged

        schema = TableRows("sqlite_master", _MASTER)
        reader.table(1, schema, keep)
        scan = RowScan({}, image.wal, image.header_ok, schema.complete, reader.damaged)
        roots = {str(v[1]): v for v in entries if v[0] == "table"}
        for name, columns in wanted.items():
            entry = roots.get(name)
            table = TableRows(name, _source_columns(entry, columns))
            scan.tables[name] = table
            if entry is None or type(entry[3]) is not int:
                continue
            reader.table(entry[3], table, take)
            for index in entries:
                if sound(table) or table.index_complete:
                    break  # nothing lost, or one whole index names every row already
                if index[0] == "index" and index[2] == name and type(index[3]) is int:
                    reader.index(index[3], table)
        broken = [t for t in scan.tables.values() if t.aliased and not sound(t)]
        if broken:
            scan.orphan_rows = reader.orphans(broken, take)
    return scan


_MASTER = tuple(
    Column(name, affinity, False, False, False)
    for name, affinity in (
        ("type", "TEXT"),
        ("name", "TEXT"),
        ("tbl_name", "TEXT"),
        ("rootpage", "INTEGER"),
        ("sql", "TEXT"),
    )
)


def _source_columns(
    entry: tuple[Value, ...] | None, target: tuple[Column, ...]
) -> tuple[Column, ...]:
    """The damaged file's own column list for a table (its CREATE statement, parsed by an
    in-memory SQLite), or ``target``'s when that is unreadable or not a plain CREATE TABLE."""
    sql = entry[4] if entry is not None else None
    if not isinstance(sql, str) or not sql.lstrip().upper().startswith("CREATE TABLE"):
        return target
    scratch = sqlite3.connect(":memory:")
    try:
        # Text from a damaged file: a CREATE ... AS SELECT would run its query here.
        scratch.set_authorizer(_no_queries)
        scratch.execute(sql)
        scratch.set_authorizer(None)
        name = str(entry[1]) if entry is not None else ""
        return columns_of(scratch, f'"{name}"') or target
    except sqlite3.Error:
        return target
    finally:
        scratch.close()


def _no_queries(action: int, *_: str | None) -> int:
    """SQLite authorizer: a statement may declare a table, not run queries or functions."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _tree_page(image: PageImage, number: int, kinds: tuple[int, int]) -> BTreePage:
    """Page ``number`` parsed, which must be one of ``kinds`` (table or index pages)."""
    page = btree_page(image.page(number), number, image.usable)
    if page.kind not in kinds:
        raise DamageError(f"page {number} has type {page.kind}, not one of {kinds}")
    return page


class _Reader:
    """Walks the trees of one ``PageImage``, remembering every page it used (``visited``:
    b-tree and overflow pages) and every page it could not read (``damaged``)."""

    def __init__(self, image: PageImage, progress: Progress) -> None:
        self.image = image
        self.visited: set[int] = set()
        self.damaged: list[int] = []
        self._progress = progress

    def table(self, root: int, table: TableRows, take: Take) -> None:
        """Offer every row of the table tree at ``root`` to ``take``."""
        complete = True
        for page in self._tree(root, (TABLE_LEAF, TABLE_INTERIOR)):
            if page is None:
                complete = False
                continue
            for cell in page.cells if page.leaf else ():
                complete &= _offer(table, cell.key, self._record(cell, self.visited), take)
        table.complete = complete

    def index(self, root: int, table: TableRows) -> None:
        """Note every rowid the index tree at ``root`` (an index of ``table``) names."""
        complete = True
        for page in self._tree(root, (INDEX_LEAF, INDEX_INTERIOR)):
            if page is None:
                complete = False
                continue
            for cell in page.cells:  # interior cells of an index hold entries too
                entry = self._record(cell, self.visited)
                if entry and type(entry[-1]) is int:
                    table.indexed.add(entry[-1])
                else:
                    complete = False
        table.index_complete = table.index_complete or complete

    def orphans(self, tables: list[TableRows], take: Take) -> int:
        """Offer the rows on table leaf pages no tree reached (and not free) to the first of
        ``tables`` whose columns they fit; returns how many were taken."""
        image = self.image
        lock_page = (1 << 30) // image.page_size + 1  # the page holding SQLite's lock bytes
        skip = self.visited | (image.freelist or set()) | {lock_page}
        found = 0
        for number in range(2, image.pages + 1):
            self._progress()
            if number in skip:
                continue
            try:
                page = _tree_page(image, number, (TABLE_LEAF, TABLE_LEAF))
            except DamageError:
                continue  # an overflow or free page, another kind, or damaged: nothing to take
            used: set[int] = set()
            for cell in page.cells:
                values = self._record(cell, used)
                fitting = [t for t in tables if values is not None and fits(values, t.columns)]
                if fitting and cell.key not in fitting[0].seen:
                    found += _offer(fitting[0], cell.key, values, take)
            skip |= used

        return found

    def _tree(self, root: int, kinds: tuple[int, int]) -> Iterator[BTreePage | None]:
        """The pages of the tree at ``root``, parents first, left to right; None for a page
        that could not be read (or is reached twice: a damaged pointer)."""
        stack = [root]
        while stack:
            number = stack.pop()
            self._progress()
            if number in self.visited:
                yield None
                continue
            self.visited.add(number)
            try:
                page = _tree_page(self.image, number, kinds)
            except DamageError:
                self.damaged.append(number)
                yield None
                continue
            stack.extend(reversed(page.children))
            yield page

    def _record(self, cell: Cell, used: set[int]) -> tuple[Value, ...] | None:
        try:
            return record(payload(self.image, cell, used))
        except DamageError:
            return None


def _offer(table: TableRows, key: int, values: tuple[Value, ...] | None, take: Take) -> bool:
    """Hand one row to ``take``; False if it is damaged (or its rowid was seen already)."""
    if key in table.seen:
        return False  # the same rowid twice: a damaged tree
    if values is not None and fits(values, table.columns) and take(table, key, values):
        table.seen.add(key)
        return True
    table.invalid.add(key)
    return False
