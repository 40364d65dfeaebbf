"""Encrypted event bodies in the outbox: sealed at enqueue, clear in batches, mixed stores,
missing and wrong keys refused before anything changes, swapped or altered rows parked."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from edge_app.atrest import Sealer
from edge_app.cli import main
from edge_app.clock import FakeClock
from edge_app.errors import EncryptionError
from edge_app.outbox import Outbox, OutboxReader
from edge_app.uplink import decode_batch, encode_batch
from tests.factories import DEVICE, make_event

KEY = bytes(range(32))
YEARS_BEHIND = 1_200_000_000.0  # 2008: a board without a battery-backed clock
TRUE_WALL = 1_790_000_000.0


def open_box(
    path: Path, clock: FakeClock, sealer: Sealer | None, *, boot_id: str | None = None
) -> Outbox:
    return Outbox(
        path, clock=clock, device=DEVICE, max_bytes=2**26, max_age_s=86400.0,
        encoder=encode_batch, sealer=sealer, boot_id=boot_id,
    )  # fmt: skip


def stored(path: Path) -> list[tuple[int, str, str, bytes | str, int]]:
    """Every row as the file holds it: (seq, id, typeof(body), body, bytes)."""
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT seq, id, typeof(body), body, bytes FROM events ORDER BY seq"
        ).fetchall()


def key_file(path: Path, key: bytes = KEY) -> Path:
    path.write_bytes(base64.b64encode(key) + b"\n")
    path.chmod(0o600)
    return path


def test_bodies_are_sealed_at_rest_and_clear_in_the_batch(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "o.db"
    with open_box(db, clock, Sealer(KEY)) as box:
        events = [box.enqueue(make_event(clock, label="forklift")) for _ in range(3)]
        clear = [json.dumps(e.to_json(), separators=(",", ":")) for e in events]
        assert box.stats().bytes == sum(len(c) for c in clear)  # budgets count clear bytes
        rows = stored(db)
        assert [kind for _, _, kind, _, _ in rows] == ["blob"] * 3
        for (_, _, _, body, size), text in zip(rows, clear, strict=True):
            assert isinstance(body, bytes)
            assert body.startswith(b"EAS1")
            assert b"forklift" not in body
            assert size == len(text)
        batch = box.lease(10, 1 << 20)
        assert batch is not None
        assert list(batch.events) == clear
        assert [e["label"] for e in decode_batch(batch.payload)["events"]] == ["forklift"] * 3
    for name in ("o.db", "o.db-wal"):
        if (tmp_path / name).exists():
            assert b"forklift" not in (tmp_path / name).read_bytes()


def test_turning_encryption_on_then_off_loses_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "o.db"
    labels = []
    for i, sealer in enumerate((None, Sealer(KEY), Sealer(KEY, seal_new=False))):
        with open_box(db, clock, sealer) as box:
            for j in range(2):
                labels.append(f"label-{i}-{j}")
                box.enqueue(make_event(clock, label=labels[-1]))
    assert [kind for _, _, kind, _, _ in stored(db)] == ["text"] * 2 + ["blob"] * 2 + ["text"] * 2
    with open_box(db, clock, Sealer(KEY, seal_new=False)) as box:
        batch = box.lease(100, 1 << 20)
        assert batch is not None
    sent = decode_batch(batch.payload)["events"]
    assert [e["label"] for e in sent] == labels
    assert [e["seq"] for e in sent] == [1, 2, 3, 4, 5, 6]


def test_no_key_or_another_key_is_refused_before_anything_changes(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "o.db"
    with open_box(db, clock, Sealer(KEY)) as box:
        box.enqueue(make_event(clock))
        box.enqueue(make_event(clock))
        assert box.lease(1, 1 << 20) is not None  # one row out in a batch when it stops
    before = stored(db)
    with sqlite3.connect(db) as conn:
        leases = conn.execute("SELECT lease_id FROM events ORDER BY seq").fetchall()
    assert leases[0][0] is not None
    with pytest.raises(EncryptionError, match=r"holds 2 encrypted event\(s\).*no key"):
        open_box(db, clock, None)
    other = Sealer(bytes(range(1, 33)), source="key file /etc/other.key")
    with pytest.raises(EncryptionError, match=r"wrong key.*key id \w{8}.*other\.key is key id"):
        open_box(db, clock, other)
    assert stored(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT lease_id FROM events ORDER BY seq").fetchall() == leases


def test_swapped_or_altered_rows_are_parked_not_sent(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "o.db"
    with open_box(db, clock, Sealer(KEY)) as box:
        events = [box.enqueue(make_event(clock, rule=f"r{i}")) for i in range(4)]
    with sqlite3.connect(db) as conn:  # someone with the file swaps two rows' bodies, alters one
        (a,), (b,) = conn.execute("SELECT body FROM events WHERE seq IN (1, 2) ORDER BY seq")
        conn.execute("UPDATE events SET body = ? WHERE seq = 1", (b,))
        conn.execute("UPDATE events SET body = ? WHERE seq = 2", (a,))
        (c,) = conn.execute("SELECT body FROM events WHERE seq = 3").fetchone()
        conn.execute("UPDATE events SET body = ? WHERE seq = 3", (c[:-1] + bytes([c[-1] ^ 1]),))
    with open_box(db, clock, Sealer(KEY)) as box:  # one bad row must not stop the device
        batch = box.lease(10, 1 << 20)
        assert batch is not None
        assert box.dead_letters() == 3
    doc = decode_batch(batch.payload)
    assert [e["id"] for e in doc["events"]] == [events[3].id]
    assert doc["dropped"] == {"r0": {"medium": 1}, "r1": {"medium": 1}, "r2": {"medium": 1}}
    with sqlite3.connect(db) as conn:  # kept in the file as they were, for analysis
        parked = conn.execute("SELECT seq, reason FROM dead_letter ORDER BY seq").fetchall()
    assert [seq for seq, _ in parked] == [1, 2, 3]
    assert all("fails authentication" in reason for _, reason in parked)


def test_clock_correction_keeps_sealed_bodies_sealed(tmp_path: Path) -> None:
    clock = FakeClock(monotonic=50.0, wall=YEARS_BEHIND)
    db = tmp_path / "o.db"
    with open_box(db, clock, Sealer(KEY, seal_new=True), boot_id="boot-a") as box:
        box.enqueue(make_event(clock))
        clock.advance(2.0)
        clock.set_wall(TRUE_WALL)  # NTP steps the clock at mono 52
        box.stats()
        batch = box.lease(10, 1 << 20)
        assert batch is not None
        assert box.times_corrected == 1
        ((_, _, kind, body, size),) = stored(db)
    (event,) = decode_batch(batch.payload)["events"]
    assert event["time_corrected"] is True
    assert event["ts_recorded"].startswith("2008-")
    assert kind == "blob"
    assert isinstance(body, bytes)
    assert body.startswith(b"EAS1")
    assert size == len(batch.events[0])  # the corrected clear length


@pytest.fixture
def sealed_db(tmp_path: Path) -> Path:
    clock = FakeClock()
    db = tmp_path / "outbox.db"
    with open_box(db, clock, None) as box:
        box.enqueue(make_event(clock, label="plain-one"))
    with open_box(db, clock, Sealer(KEY)) as box:
        for i in range(3):
            box.enqueue(make_event(clock, label=f"sealed-{i}"))
    return db


def test_export_and_peek_decrypt_with_the_key(
    sealed_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_file(tmp_path / "k")
    assert main(["outbox", "--db", str(sealed_db), "peek", "2", "--key", str(key)]) == 0
    peeked = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["label"] for e in peeked] == ["plain-one", "sealed-0"]
    out = tmp_path / "export.jsonl"
    assert main(["outbox", "--db", str(sealed_db), "export", str(out), "--key", str(key)]) == 0
    exported = [json.loads(line)["label"] for line in out.read_text().splitlines()]
    assert exported == ["plain-one", "sealed-0", "sealed-1", "sealed-2"]
    assert capsys.readouterr().out == f"exported 4 event(s) to {out}\n"
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"device: {{thing_name: {DEVICE}, data_dir: {tmp_path}}}\n"
        "cameras: [{name: a, source: {type: usb}}]\n"
        f"outbox: {{path: {sealed_db}}}\n"
        f"encryption: {{enabled: true, key_file: {key}}}\n"
        "uplink: {enabled: false}\n"
    )
    assert main(["outbox", "--config", str(config), "peek", "9"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["outbox", "--db", str(sealed_db), "status"]) == 0
    assert "encrypted    3 of 4 event(s)" in capsys.readouterr().out


def test_export_without_the_key_or_with_another_says_so(
    sealed_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export.jsonl"
    assert main(["outbox", "--db", str(sealed_db), "export", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds 3 encrypted event(s) (the oldest is seq 2)" in err
    assert "--key FILE" in err
    assert not out.exists()  # nothing half written
    assert main(["outbox", "--db", str(sealed_db), "peek"]) == 2
    assert capsys.readouterr().out == ""
    other = key_file(tmp_path / "other", bytes(range(1, 33)))
    assert main(["outbox", "--db", str(sealed_db), "peek", "--key", str(other)]) == 2
    captured = capsys.readouterr()
    assert "wrong key" in captured.err
    assert captured.out == ""
    other.chmod(0o644)
    assert main(["outbox", "--db", str(sealed_db), "peek", "--key", str(other)]) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_export_leaves_out_an_altered_row_and_says_which(
    sealed_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(sealed_db) as conn:
        (body,) = conn.execute("SELECT body FROM events WHERE seq = 3").fetchone()
        conn.execute("UPDATE events SET body = ? WHERE seq = 3", (body[:-2] + b"\0\0",))
    key = key_file(tmp_path / "k")
    out = tmp_path / "export.jsonl"
    assert main(["outbox", "--db", str(sealed_db), "export", str(out), "--key", str(key)]) == 1
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [1, 2, 4]
    err = capsys.readouterr().err
    assert "1 encrypted event(s) left out" in err
    assert "seq 3:" in err
    with OutboxReader(sealed_db) as reader:
        assert len(list(reader.bodies(sealer=Sealer(KEY)))) == 3
        assert [seq for seq, _ in reader.unreadable] == [3]
