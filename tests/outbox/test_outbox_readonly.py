"""``edge-app outbox status`` is read-only for real: it creates no -wal/-shm beside a stopped
daemon's database, works in a read-only folder, and sees a running (or crashed) daemon's
committed events that are still only in its -wal; encrypted events decrypt with ``--key`` in
all of these.

The read-only folder is a read-only bind mount of the outbox's folder (root only: as root a
chmod would not stop anything); those cases are skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.atrest import generate_key_file, load_sealer
from edge_app.cli import main
from edge_app.clock import FakeClock
from edge_app.outbox import LaneStore, Outbox
from tests.conftest import REPO_ROOT
from tests.factories import DEVICE, make_event


def open_outbox(path: Path, clock: FakeClock) -> Outbox:
    return Outbox(path, clock=clock, device=DEVICE, max_bytes=1 << 26, max_age_s=86400.0)


def status(db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["outbox", "--db", str(db), "status", "--json"]) == 0, capsys.readouterr().err
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def read_only_view(tmp_path: Path, data: Path) -> Iterator[Path]:
    """``data`` seen through a read-only bind mount (writes there fail with EROFS)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root; run as root to test a read-only folder")
    view = tmp_path / "view"
    view.mkdir()
    done = subprocess.run(["mount", "--bind", str(data), str(view)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(view)], capture_output=True, text=True
        )
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {ro.stderr.strip()}")
        with pytest.raises(OSError):
            (view / "probe").write_bytes(b"")
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_status_of_a_stopped_daemon_creates_no_side_files(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    with open_outbox(data / "outbox.db", clock) as box:
        for _ in range(3):
            box.enqueue(make_event(clock))
    before = listing(data)
    assert before == ["outbox.db", "outbox.db.seq"]  # closed cleanly: checkpointed
    assert status(data / "outbox.db", capsys)["depth"] == 3
    assert main(["outbox", "--db", str(data / "outbox.db"), "peek", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 1
    assert listing(data) == before


def test_status_of_a_stopped_daemon_in_a_read_only_folder(
    data: Path, read_only_view: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    with open_outbox(data / "outbox.db", clock) as box:
        for _ in range(4):
            box.enqueue(make_event(clock))
    assert status(read_only_view / "outbox.db", capsys)["depth"] == 4
    assert listing(data) == ["outbox.db", "outbox.db.seq"]


def test_status_of_a_running_daemon_sees_what_is_only_in_its_wal(
    data: Path, read_only_view: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    with (
        open_outbox(data / "outbox.db", clock) as box,
        LaneStore(box.path, "snapshots") as lane,
    ):
        for _ in range(5):
            box.enqueue(make_event(clock))
        lane.add([(clock.time(), '{"event_id":"e1","file":"a.jpg","bytes":100}')])
        before = listing(data)
        assert "outbox.db-wal" in before
        seen = status(read_only_view / "outbox.db", capsys)
        assert seen["depth"] == 5
        weight = lane.stats().bytes  # the body plus the JPEG's 100 bytes
        assert seen["lanes"] == {"snapshots": {"rows": 1, "bytes": weight, "dropped": 0}}
        box.enqueue(make_event(clock))  # committed while the view is not open
        assert status(read_only_view / "outbox.db", capsys)["depth"] == 6
        assert listing(data) == before


_CRASH = """
import os, sys
from pathlib import Path
from edge_app.clock import FakeClock
from edge_app.outbox import Outbox
from tests.factories import DEVICE, make_event
clock = FakeClock()
box = Outbox(Path(sys.argv[1]), clock=clock, device=DEVICE, max_bytes=1 << 26, max_age_s=86400.0)
for _ in range(7):
    box.enqueue(make_event(clock))
os._exit(0)  # killed: no close, no checkpoint; the events are only in the -wal
"""


@pytest.mark.slow
def test_status_after_a_crash_reads_the_wal_without_writing(
    data: Path, read_only_view: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = data / "outbox.db"
    subprocess.run([sys.executable, "-c", _CRASH, str(db)], cwd=REPO_ROOT, check=True)
    before = listing(data)
    assert before == ["outbox.db", "outbox.db-shm", "outbox.db-wal", "outbox.db.seq"]
    assert status(read_only_view / "outbox.db", capsys)["depth"] == 7
    assert listing(data) == before


def sealed_outbox(path: Path, clock: FakeClock, key: Path) -> Outbox:
    sealer = load_sealer(key, None, seal_new=True)
    return Outbox(
        path, clock=clock, device=DEVICE, max_bytes=1 << 26, max_age_s=86400.0, sealer=sealer
    )


def peek_labels(db: Path, key: Path | None, capsys: pytest.CaptureFixture[str]) -> list[str]:
    extra = [] if key is None else ["--key", str(key)]
    assert main(["outbox", "--db", str(db), "peek", "100", *extra]) == 0, capsys.readouterr().err
    return [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]


def test_encrypted_events_decrypt_with_key_in_a_read_only_folder(
    tmp_path: Path, data: Path, read_only_view: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "at-rest.key"
    generate_key_file(key)
    clock = FakeClock()
    with sealed_outbox(data / "outbox.db", clock, key) as box:
        for i in range(3):
            box.enqueue(make_event(clock, label=f"sealed-{i}"))
    before = listing(data)
    assert before == ["outbox.db", "outbox.db.seq"]  # stopped: the view opens it immutable
    db = read_only_view / "outbox.db"
    assert status(db, capsys)["encrypted"] == 3
    assert peek_labels(db, key, capsys) == ["sealed-0", "sealed-1", "sealed-2"]
    out = tmp_path / "export.jsonl"
    assert main(["outbox", "--db", str(db), "export", str(out), "--key", str(key)]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert capsys.readouterr().out == f"exported 3 event(s) to {out}\n"
    assert main(["outbox", "--db", str(db), "peek"]) == 2  # no key: says so, prints nothing
    captured = capsys.readouterr()
    assert "3 encrypted event(s)" in captured.err
    assert captured.out == ""
    assert listing(data) == before


def test_a_running_encrypted_daemons_wal_decrypts_read_only(
    tmp_path: Path, data: Path, read_only_view: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "at-rest.key"
    generate_key_file(key)
    clock = FakeClock()
    with sealed_outbox(data / "outbox.db", clock, key) as box:
        box.enqueue(make_event(clock, label="first"))
        before = listing(data)
        assert "outbox.db-wal" in before
        db = read_only_view / "outbox.db"
        assert peek_labels(db, key, capsys) == ["first"]
        box.enqueue(make_event(clock, label="second"))  # only in the -wal
        assert peek_labels(db, key, capsys) == ["first", "second"]
        assert listing(data) == before
