"""`edge-app outbox salvage FILE`: a damaged file set aside, copied into an outbox by hand."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.atrest import Sealer
from edge_app.cli import main
from edge_app.clock import FakeClock
from tests.factories import make_event
from tests.outbox.test_outbox_encryption import KEY, key_file
from tests.outbox_damage import damage, drain, open_box, pages, readable, write_outbox


@pytest.fixture
def set_aside(tmp_path: Path) -> Path:
    """A damaged outbox as the daemon leaves it when its own salvage could not be written."""
    path = tmp_path / "outbox.db.corrupt-20261201T101500Z"
    write_outbox(path)
    damage(path, pages(path, "events", "leaf")[5])
    return path


def live_outbox(tmp_path: Path, n: int = 3) -> Path:
    """The daemon's fresh outbox (stopped): ``n`` events raised after the restart."""
    path = tmp_path / "outbox.db"
    # The restart continued seq past the old file's reservation.
    path.with_name("outbox.db.seq").write_text("5000\n")
    clock = FakeClock()
    with open_box(path, clock) as box:
        for _ in range(n):
            box.enqueue(make_event(clock))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["outbox", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.slow
def test_salvage_into_the_live_outbox_of_a_stopped_daemon(
    tmp_path: Path, set_aside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = live_outbox(tmp_path)
    with open_box(live) as box:
        new = drain(box)  # delivered before the salvage
    code, out, _ = run(capsys, "--db", str(live), "salvage", str(set_aside), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["events"] > 250
    assert report["unreadable"] > 0
    assert report["kept_at"] == str(set_aside)
    with open_box(live) as box:
        delivered = drain(box)
        assert box.enqueue(make_event(FakeClock())).seq == new[-1]["seq"] + 1  # seq unchanged
    assert len(delivered) == report["events"]
    assert [e["seq"] for e in delivered] == sorted({e["seq"] for e in delivered})
    assert max(e["seq"] for e in delivered) < new[0]["seq"]


@pytest.mark.slow
def test_the_same_file_twice_is_refused_and_never_duplicates(
    tmp_path: Path, set_aside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = live_outbox(tmp_path)
    assert run(capsys, "--db", str(live), "salvage", str(set_aside))[0] == 0
    code, _, err = run(capsys, "--db", str(live), "salvage", str(set_aside))
    assert code == 2
    assert "salvaged into" in err
    assert "--again" in err
    code, out, _ = run(capsys, "--db", str(live), "salvage", str(set_aside), "--again", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["events"], report["present"]) == (0, report["present"])
    assert report["present"] > 250
    with open_box(live) as box:
        ids = [e["id"] for e in drain(box)]
    assert len(ids) == len(set(ids))


@pytest.mark.slow
def test_a_target_in_use_is_refused(
    tmp_path: Path, set_aside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = live_outbox(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(live)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"  # a daemon has the outbox open
        code, _, err = run(capsys, "--db", str(live), "salvage", str(set_aside))
    finally:
        holder.kill()
        holder.communicate()
    assert code == 2
    assert "is in use" in err
    assert "stop it first" in err
    with open_box(live) as box:
        assert box.stats().depth == 3  # nothing written


_HOLD = """
import sys, time
from pathlib import Path
from tests.outbox_damage import open_box
box = open_box(Path(sys.argv[1]))
print("open", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_refusals_say_what_to_do(
    tmp_path: Path, set_aside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"
    code, _, err = run(capsys, "--db", str(missing), "salvage", str(set_aside))
    assert (code, "no outbox at" in err, "--create" in err) == (2, True, True)
    assert not missing.exists()  # never a file the daemon would not read
    live = live_outbox(tmp_path)
    code, _, err = run(capsys, "--db", str(live), "salvage", str(live))
    assert (code, "is the outbox itself" in err) == (2, True)
    code, _, err = run(capsys, "--db", str(live), "salvage", str(tmp_path / "gone"))
    assert (code, "no file to salvage" in err) == (2, True)
    code, _, err = run(capsys, "--db", str(live), "salvage", str(set_aside), "--create")
    assert (code, "leave out --create" in err) == (2, True)


@pytest.mark.slow
def test_salvage_into_a_new_file(
    tmp_path: Path, set_aside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "rescued.db"
    code, out, _ = run(capsys, "--db", str(new), "salvage", str(set_aside), "--create")
    assert code == 0
    assert f"-> {new}: salvaged" in out
    with open_box(new) as box:
        assert box.recovery is None  # a salvage by hand is not announced as a recovery
        assert box.stats().depth > 250


@pytest.mark.slow
def test_an_encrypted_file_salvaged_into_a_new_file_is_private_and_reads_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--create` makes the new outbox 0600 under umask 022; the encrypted bodies need no key
    to be copied, and `export --key` reads them back through the read-only reader."""
    damaged = tmp_path / "outbox.db.corrupt-20261201T101500Z"
    written = write_outbox(damaged, sealer=Sealer(KEY))
    damage(damaged, pages(damaged, "events", "leaf")[5])
    expected = [written.events[s] for s in sorted(readable(damaged, written.events))]
    new = tmp_path / "rescued" / "outbox.db"
    old = os.umask(0o022)
    try:
        code, out, _ = run(capsys, "--db", str(new), "salvage", str(damaged), "--create", "--json")
    finally:
        os.umask(old)
    assert code == 0
    assert json.loads(out)["events"] == len(expected) < len(written.events)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in new.parent.iterdir()}
    assert modes == {"outbox.db": oct(0o600)}  # one file: no -wal/-shm left beside it
    assert stat.S_IMODE(new.parent.stat().st_mode) == 0o700
    code, _, err = run(capsys, "--db", str(new), "export", str(tmp_path / "x.jsonl"))
    assert code == 2
    assert f"holds {len(expected)} encrypted event(s)" in err
    key = key_file(tmp_path / "k")
    exported = tmp_path / "events.jsonl"
    assert run(capsys, "--db", str(new), "export", str(exported), "--key", str(key))[0] == 0
    assert [json.loads(line) for line in exported.read_text().splitlines()] == expected
    assert {p.name for p in new.parent.iterdir()} == {"outbox.db"}  # the reader made nothing
