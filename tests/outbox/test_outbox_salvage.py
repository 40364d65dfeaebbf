"""Salvage of a partly damaged outbox: a real file written by ``Outbox``, damaged at one page
(file header, schema page, meta, an index, an event leaf, the events root, an overflow page, a
lane page) or in its WAL, then opened again. Every event SQLite itself can still read is
delivered exactly once with its id and seq; seq has gaps only where rows were lost; the report
says what was lost; the damaged file is kept unmodified."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_app.atrest import Sealer
from edge_app.clock import FakeClock
from edge_app.domain import ModelRef
from edge_app.errors import EncryptionError
from edge_app.outbox import (
    RECOVERY_RULE,
    LaneStore,
    OutboxReader,
    SalvageReport,
    recovery_event,
)
from edge_app.outbox.pages import Value
from edge_app.outbox.recovery import SEQ_BLOCK
from edge_app.outbox.rowscan import TableRows, columns_of, scan_rows
from edge_app.outbox.salvage import TABLES, salvage_into, seq_ranges
from edge_app.outbox.schema import open_db
from tests.factories import DEVICE, make_event
from tests.outbox.test_outbox_encryption import KEY
from tests.outbox_damage import (
    PAGE,
    damage,
    damage_wal_frame,
    drain,
    open_box,
    pages,
    readable,
    wal_pages,
    write_outbox,
    write_with_wal,
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kept_files(db: Path) -> list[Path]:
    """The damaged database files kept beside ``db`` (not their -wal/-shm)."""
    found = db.parent.glob(f"{db.name}.corrupt-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


# Each case damages one place and names the seqs it may lose: those SQLite cannot read.
Case = Callable[[Path], None]
CASES: dict[str, Case] = {
    "file header": lambda db: damage(db, 1, length=100),
    "schema page (page 1)": lambda db: damage(db, 1),
    "meta": lambda db: damage(db, pages(db, "meta")[0]),
    "id index leaf": lambda db: damage(db, pages(db, "sqlite_autoindex_events_1", "leaf")[1]),
    "event leaf": lambda db: damage(db, pages(db, "events", "leaf")[40]),
    "events root (interior)": lambda db: damage(db, pages(db, "events", "internal")[0]),
    "overflow page": lambda db: damage(db, pages(db, "events", "overflow")[2]),
    "lane page": lambda db: damage(db, pages(db, "lane_rows")[0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.slow
def test_damage_at_one_place_loses_only_what_is_on_it(tmp_path: Path, case: str) -> None:
    db = tmp_path / "outbox.db"
    written = write_outbox(db)
    CASES[case](db)
    damaged_sha = sha(db)
    # The oracle: rows SQLite reads one by one from the damaged file. Where an interior or
    # schema page hides every row from SQLite, the leaves are intact and nothing may be lost.
    sqlite_reads = readable(db, written.events)
    hidden = case in {"schema page (page 1)", "events root (interior)", "file header"}
    lost = set() if hidden else set(written.events) - sqlite_reads
    if case in {"event leaf", "overflow page"}:
        assert lost, "the damage missed the events"
    else:
        assert not lost

    with open_box(db) as box:
        report = box.recovery
        assert report is not None
        delivered = drain(box)
        after = box.enqueue(make_event(FakeClock())).seq

    seqs = [e["seq"] for e in delivered]
    assert len(seqs) == len(set(seqs))  # exactly once
    assert {e["id"] for e in delivered} == {written.events[s]["id"] for s in written.events} - {
        written.events[s]["id"] for s in lost
    }
    assert delivered == [written.events[s] for s in sorted(set(written.events) - lost)]
    assert report.events == len(delivered)
    assert report.unreadable == len(lost)
    if report.exact:
        assert report.seq_lost == tuple(seq_ranges(lost))
    else:  # the schema page held the indexes' roots: the loss is not known, the gaps are named
        assert case == "schema page (page 1)"
        assert all(any(a <= s <= b for a, b in report.seq_lost) for s in lost)
    assert after is not None
    assert after > max(written.events)
    assert report.seq_skipped == (max(written.events) + 1, after - 1)
    lanes_lost = 41 if case == "lane page" else 0
    assert (report.lane_rows, report.lane_unreadable) == (41 - lanes_lost, lanes_lost)
    (kept,) = kept_files(db)
    assert str(kept) == report.kept_at
    assert sha(kept) == damaged_sha  # kept for inspection, byte for byte


@pytest.mark.slow
def test_text_damaged_inside_an_intact_page_is_parked_not_blocking(tmp_path: Path) -> None:
    """Bytes changed inside one event's body: every page is intact, so the startup check passes
    and there is nothing to salvage, but that row can never be read. It goes to the dead-letter
    lane (reported as a drop) and every event behind it is delivered."""
    db = tmp_path / "outbox.db"
    written = write_outbox(db)
    damage(db, pages(db, "events", "leaf")[20], start=3000, length=9)
    lost = set(written.events) - readable(db, written.events)
    assert len(lost) == 1
    with open_box(db) as box:
        assert box.recovery is None
        delivered = drain(box)
        assert box.dead_letters() == written.dead_letters + 1
        assert box.stats().dropped_total == {"medium": 1}
    assert delivered == [written.events[s] for s in sorted(set(written.events) - lost)]


@pytest.mark.slow
def test_carried_over_drops_dead_letters_and_lanes(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    written = write_outbox(db)
    damage(db, pages(db, "events", "leaf")[10])
    with open_box(db) as box:
        assert box.dead_letters() == written.dead_letters
        first = box.lease(1, 1 << 20)
        assert first is not None
        assert first.dropped == {"intrusion": {"medium": written.drops}}
        report = box.recovery
        assert report is not None
        assert (report.drops, report.dead_letter) == (written.drops, written.dead_letters)
    with LaneStore(db, "metrics") as metrics, LaneStore(db, "snapshots") as snaps:
        assert [json.loads(r.body)["v"] for r in metrics.peek(100)] == list(range(40))
        assert len(snaps.peek(10)) == 1


@pytest.mark.slow
def test_leases_are_void_and_drops_in_flight_are_pending_again(tmp_path: Path) -> None:
    """A batch out on the wire when the file was damaged: its events are sent again and the
    drop counts that rode in it are reported again (at-least-once; the cloud dedupes)."""
    db = tmp_path / "outbox.db"
    written = write_outbox(db, n=30)
    with open_box(db) as box:
        batch = box.lease(5, 1 << 20)
        assert batch is not None
        assert batch.dropped == {"intrusion": {"medium": written.drops}}
        box.close()  # no PUBACK came: the batch stays leased in the file
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM events WHERE lease_id IS NOT NULL").fetchone() == (5,)
    conn.close()
    damage(db, pages(db, "meta")[0])
    with open_box(db) as box:
        assert box.recovery is not None
        again = box.lease(100, 1 << 20)
        assert again is not None
        assert again.dropped == batch.dropped
        assert [json.loads(b) for b in again.events] == list(written.events.values())


@pytest.mark.slow
def test_sound_file_reads_the_same_as_sqlite(tmp_path: Path) -> None:
    """The page reader against SQLite on an undamaged file: every table, overflow included."""
    db = tmp_path / "outbox.db"
    write_outbox(db, n=900, big_every=20)
    conn = open_db(db)
    try:
        wanted = {t: columns_of(conn, t) for t in TABLES}
        expected = {
            t: {r[0]: r[1:] for r in conn.execute(f"SELECT rowid, * FROM {t}")} for t in TABLES
        }
    finally:
        conn.close()
    got: dict[str, dict[int, tuple[Value, ...]]] = {t: {} for t in TABLES}

    def take(table: TableRows, rowid: int, values: tuple[Value, ...]) -> bool:
        alias = [c.rowid for c in table.columns]
        got[table.name][rowid] = tuple(
            rowid if a else v for a, v in zip(alias, values, strict=True)
        )
        return True

    scan = scan_rows(db, wanted, take)
    assert (scan.header_ok, scan.schema_ok, scan.damaged_pages) == (True, True, [])
    assert sum(len(rows) for rows in expected.values()) > 900
    for table in TABLES:
        assert got[table].keys() == expected[table].keys(), table
        for rowid, want in expected[table].items():
            # SQLite returns REAL columns as floats; the file stores whole ones as integers.
            have = tuple(
                float(g) if isinstance(w, float) and type(g) is int else g
                for g, w in zip(got[table][rowid], want, strict=True)
            )
            assert have == want, (table, rowid)
        assert scan.tables[table].complete


@pytest.mark.parametrize("where", ["page written again later", "last image of an event leaf"])
@pytest.mark.slow
def test_wal_damage_loses_only_the_damaged_frame(tmp_path: Path, where: str) -> None:
    """SQLite stops replaying a WAL at a bad frame checksum and drops the commits after it
    silently (quick_check says ok, and seq would repeat). The outbox finds that before SQLite
    writes over them, and the salvage applies every good frame after the bad one: only rows
    whose newest image was in the bad frame can be lost, and the report names them."""
    db = tmp_path / "outbox.db"
    write_with_wal(db, 60)
    frames = wal_pages(db)
    leaves = set(pages(db, "events", "leaf"))
    later = [
        n
        for n, page in enumerate(frames, 1)
        if (page in frames[n:]) == (where == "page written again later")
        and (page in leaves or where == "page written again later")
    ]
    bad = later[len(later) // 2]
    damage_wal_frame(db, bad)
    plain = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    (sqlite_count,) = plain.execute("SELECT COUNT(*) FROM events").fetchone()
    plain.close()
    assert sqlite_count < 60  # what opening it plainly would have kept
    wal_sha = sha(db.with_name("outbox.db-wal"))

    with open_box(db) as box:
        report = box.recovery
        assert report is not None
        assert "write-ahead log is damaged" in report.problem
        delivered = drain(box)
        after = box.enqueue(make_event(FakeClock())).seq
    seqs = [e["seq"] for e in delivered]
    lost = set(range(1, 61)) - set(seqs)
    assert seqs == sorted(set(seqs))
    assert all(e["i"] == e["seq"] - 1 for e in delivered)  # each with its own seq
    if where == "page written again later":
        assert lost == set()
    else:
        assert 0 < len(lost) <= 10  # at most one page of rows
        assert len(seqs) > sqlite_count
    assert report.unreadable == len(lost)
    assert all(any(a <= s <= b for a, b in report.seq_lost) for s in lost)
    assert report.wal_frames_skipped == 1
    assert not report.exact  # a skipped frame may have held rows no index names
    assert after is not None
    assert after > 60  # seq never repeats
    (kept,) = kept_files(db)
    assert sha(kept.with_name(kept.name + "-wal")) == wal_sha


@pytest.mark.slow
def test_a_torn_wal_tail_is_not_damage(tmp_path: Path) -> None:
    """Frames of a transaction that never committed (a power cut mid-write) are what SQLite
    ignores by design: nothing in them was stored, so no salvage."""
    db = tmp_path / "outbox.db"
    write_with_wal(db, 5)
    wal = db.with_name("outbox.db-wal")
    with wal.open("ab") as fh:
        fh.write(b"\x00\x00\x00\x02" + b"\x00" * (24 + PAGE - 4))
    with open_box(db) as box:
        assert box.recovery is None
        assert len(drain(box)) == 5
    assert kept_files(db) == []


@pytest.mark.slow
def test_random_damage_never_breaks_the_salvage(tmp_path: Path) -> None:
    """Many random pages overwritten with random bytes: what is delivered is always a subset
    of what was stored, byte for byte, each once."""
    source = tmp_path / "source.db"
    written = write_outbox(source)
    rng = random.Random(20261201)
    for trial in range(12):
        db = tmp_path / f"t{trial}" / "outbox.db"
        db.parent.mkdir()
        shutil.copy(source, db)
        size = db.stat().st_size // PAGE
        with db.open("r+b") as fh:
            for page in rng.sample(range(1, size + 1), 6):
                fh.seek((page - 1) * PAGE + rng.randrange(PAGE // 2))
                fh.write(rng.randbytes(rng.randrange(1, PAGE // 2)))
        with open_box(db) as box:
            delivered = drain(box)
        seqs = [e["seq"] for e in delivered]
        assert len(seqs) == len(set(seqs)), trial
        assert all(written.events[e["seq"]] == e for e in delivered), trial


@pytest.mark.slow
def test_recovery_is_announced_once_even_across_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    write_outbox(db, n=20)
    damage(db, pages(db, "meta")[0])
    with open_box(db) as box:
        first = box.recovery
        assert first is not None
    with open_box(db) as box:  # died before announcing: still pending, the same report
        assert box.recovery == first
        event = make_event(FakeClock(), rule="outbox-recovered")
        box.report_recovery(event)
    with open_box(db) as box:
        assert box.recovery is None
        assert [e["rule"] for e in drain(box)].count("outbox-recovered") == 1


def test_a_start_that_died_mid_salvage_resumes(tmp_path: Path) -> None:
    """A complete salvage waiting as ``<db>.salvaged`` (the crash came before the swap), with
    a partial build left beside it: the next start swaps it in and keeps the damaged file."""
    db = tmp_path / "outbox.db"
    written = write_outbox(db, n=30)
    damage(db, pages(db, "events", "internal")[0])
    kept = tmp_path / "outbox.db.corrupt-19700101T000000Z"
    ready = tmp_path / "outbox.db.salvaged"
    conn = open_db(ready)
    salvage_into(db, conn, problem="test", kept_at=kept, pending=True)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    (tmp_path / "outbox.db.salvage-tmp").write_bytes(b"half a file")
    damaged_sha = sha(db)
    with open_box(db) as box:
        assert box.recovered_from == kept
        assert [e["seq"] for e in drain(box)] == sorted(written.events)
    assert sha(kept) == damaged_sha
    assert not ready.exists()


def test_salvage_that_cannot_be_written_keeps_the_file_and_says_how(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    write_outbox(db, n=10)
    damage(db, pages(db, "meta")[0])
    (tmp_path / "outbox.db.salvage-tmp").mkdir()  # the build cannot be created
    with open_box(db) as box:
        report = box.recovery
        assert report is not None
        assert box.stats().depth == 0
        seq = box.enqueue(make_event(FakeClock())).seq
    assert "edge-app outbox --db" in report.error
    assert seq is not None
    assert 10 < seq <= 10 + SEQ_BLOCK + 1
    (kept,) = kept_files(db)
    assert str(kept) in report.error


def stored_bodies(db: Path) -> dict[int, tuple[str, bytes | str]]:
    """Every event body as the file holds it: {seq: (typeof(body), body)}."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq, typeof(body), body FROM events").fetchall()
    finally:
        conn.close()
    return {int(seq): (kind, body) for seq, kind, body in rows}


@pytest.mark.parametrize("case", ["meta", "event leaf"])
@pytest.mark.slow
def test_encrypted_bodies_are_copied_as_stored_and_still_decrypt(tmp_path: Path, case: str) -> None:
    """Encryption at rest: the salvage copies sealed bodies as the bytes they are (never opened
    or sealed again: their tag binds them to their event id, which is kept), and the drain
    decrypts every readable event; none is parked as undecryptable."""
    sealer = Sealer(KEY)
    db = tmp_path / "outbox.db"
    written = write_outbox(db, sealer=sealer)
    before = stored_bodies(db)
    assert {kind for kind, _ in before.values()} == {"blob"}
    CASES[case](db)
    lost = set(written.events) - readable(db, written.events)
    assert bool(lost) == (case == "event leaf")
    with open_box(db, sealer=sealer) as box:
        report = box.recovery
        assert report is not None
        assert report.unreadable == len(lost)
        assert stored_bodies(db) == {s: before[s] for s in sorted(set(before) - lost)}
        model = ModelRef("ssd_mobilenet_v2_coco", "7046f31a72ec")
        announced = box.report_recovery(recovery_event(DEVICE, model, report, FakeClock()))
        assert stored_bodies(db)[announced.seq or 0][0] == "blob"  # sealed like any new event
        delivered = drain(box)
        assert box.dead_letters() == written.dead_letters  # none failed to decrypt
    assert delivered[:-1] == [written.events[s] for s in sorted(set(written.events) - lost)]
    assert delivered[-1]["rule"] == RECOVERY_RULE
    assert delivered[-1]["unreadable"] == len(lost)


@pytest.mark.slow
def test_an_encrypted_outbox_is_salvaged_without_the_key_and_then_needs_it(
    tmp_path: Path,
) -> None:
    """Started without the key, the damaged file is still salvaged (copying needs no key) and
    kept; the salvaged outbox is then refused like any encrypted one. With the key, every
    readable event is delivered and the pending recovery is still there to announce."""
    sealer = Sealer(KEY)
    db = tmp_path / "outbox.db"
    written = write_outbox(db, sealer=sealer)
    CASES["event leaf"](db)
    lost = set(written.events) - readable(db, written.events)
    with pytest.raises(EncryptionError, match="encrypted event") as refused:
        open_box(db)
    assert "salvaged from a damaged file" in str(refused.value)  # not "nothing was changed"
    assert len(kept_files(db)) == 1
    with open_box(db, sealer=sealer) as box:
        assert box.recovery is not None
        assert box.recovery.unreadable == len(lost)
        delivered = drain(box)
    assert delivered == [written.events[s] for s in sorted(set(written.events) - lost)]
    assert len(kept_files(db)) == 1  # salvaged once


@pytest.mark.slow
def test_the_read_only_reader_reads_a_salvaged_outbox(tmp_path: Path) -> None:
    """After a salvage at startup (the file is swapped in, its journal mode set to WAL again)
    ``OutboxReader`` reads it, while the store is open and after it closed."""
    sealer = Sealer(KEY)
    db = tmp_path / "outbox.db"
    written = write_outbox(db, sealer=sealer)
    CASES["event leaf"](db)
    lost = set(written.events) - readable(db, written.events)
    expected = [written.events[s] for s in sorted(set(written.events) - lost)]
    with open_box(db, sealer=sealer), OutboxReader(db) as reader:
        assert reader.summary().depth == len(expected)
        assert [json.loads(b) for b in reader.bodies(sealer=sealer)] == expected
    side_files = {p.name for p in tmp_path.iterdir()}
    with OutboxReader(db) as reader:
        summary = reader.summary()
        assert (summary.depth, summary.encrypted) == (len(expected), len(expected))
        assert [json.loads(b) for b in reader.bodies(sealer=sealer)] == expected
    assert {p.name for p in tmp_path.iterdir()} == side_files  # the reader created nothing


def test_salvaged_files_are_private_under_umask_022(tmp_path: Path) -> None:
    """The salvage is built, swapped in and reopened 0600 (its -wal/-shm too), in a 0700
    folder it creates, whatever the umask; the damaged file is kept with its own mode."""
    db = tmp_path / "data" / "outbox.db"
    write_outbox(db, n=60)
    CASES["meta"](db)
    old = os.umask(0o022)
    try:
        with open_box(db) as box:
            assert box.recovery is not None
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()}
    finally:
        os.umask(old)
    assert {"outbox.db", "outbox.db-wal", "outbox.db-shm"} <= modes.keys()
    assert len(kept_files(db)) == 1
    assert {name: oct(m) for name, m in modes.items() if m != 0o600} == {}
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_report_round_trips_as_json() -> None:
    report = SalvageReport(
        kept_at="/x.corrupt", problem="p", events=3, seq_lost=((4, 6),), seq_skipped=(9, 1000)
    )
    assert SalvageReport.from_json(json.loads(json.dumps(report.to_json()))) == report
