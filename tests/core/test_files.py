"""``edge_app.files``: atomic 0600 writes that never follow a symlink, 0700 folders, any umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.files import (
    atomic_writer,
    loose_bits,
    private_dir,
    private_file,
    read_nofollow,
    scratch_file,
    write_atomic,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def permissive_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """A umask that would leave new files 0644/0666 and folders 0755/0777."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_write_atomic_makes_a_0600_file_whatever_the_umask(
    tmp_path: Path, permissive_umask: int
) -> None:
    target = tmp_path / "remote-config.json"
    write_atomic(target, b"first")
    write_atomic(target, b"second")  # replacing keeps the mode too
    assert target.read_bytes() == b"second"
    assert mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remote-config.json"]


def test_write_atomic_honours_an_explicit_mode(tmp_path: Path, permissive_umask: int) -> None:
    target = tmp_path / "model.tflite"
    write_atomic(target, b"weights", mode=0o644)
    assert mode(target) == 0o644


def test_write_atomic_replaces_a_symlink_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "data.json"
    target.symlink_to(victim)
    write_atomic(target, b"ours")
    assert victim.read_bytes() == b"precious"
    assert not target.is_symlink()
    assert target.read_bytes() == b"ours"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    names: list[str] = []

    def write_and_die() -> None:
        with atomic_writer(target) as tmp:
            names.append(tmp.path.name)
            tmp.file.write(b"half")
            raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError):
        write_and_die()
    assert names[0].startswith(".clip.")  # hidden, and keeps the suffix for OpenCV
    assert names[0].endswith(".tmp.mp4")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_library_may_reopen_the_temp_file_by_name(tmp_path: Path, permissive_umask: int) -> None:
    target = tmp_path / "clip.mp4"
    with atomic_writer(target) as tmp:
        with open(tmp.path, "wb") as other:  # what OpenCV's writer does: open, truncate
            other.write(b"frames")
        assert mode(tmp.path) == 0o600
    assert target.read_bytes() == b"frames"
    assert mode(target) == 0o600


def test_temp_names_are_unique(tmp_path: Path) -> None:
    target = tmp_path / "x.jpg"
    with atomic_writer(target) as a, atomic_writer(target) as b:
        assert a.path != b.path
        a.file.write(b"a")
        b.file.write(b"b")
    assert target.read_bytes() == b"a"  # the outer one renamed last


def test_exclusive_writes_create_but_never_replace(tmp_path: Path, permissive_umask: int) -> None:
    outside = tmp_path / "outside"
    folder = tmp_path / "keys"
    folder.mkdir()
    write_atomic(folder / "new.key", b"key", exclusive=True)
    assert (folder / "new.key").read_bytes() == b"key"
    assert mode(folder / "new.key") == 0o600
    with pytest.raises(FileExistsError):
        write_atomic(folder / "new.key", b"other", exclusive=True)
    assert (folder / "new.key").read_bytes() == b"key"
    (folder / "link.key").symlink_to(outside)  # dangling
    with pytest.raises(FileExistsError):
        write_atomic(folder / "link.key", b"other", exclusive=True)
    assert not outside.exists()
    assert (folder / "link.key").is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == ["link.key", "new.key"]  # no temp


def test_a_scratch_file_is_private_and_always_removed(
    tmp_path: Path, permissive_umask: int
) -> None:
    with scratch_file(tmp_path, suffix=".mp4") as path:
        assert path.parent == tmp_path
        assert path.name.startswith(".")  # hidden: retention removes one a crash left
        assert path.suffix == ".mp4"  # a library choosing the format by extension still can
        assert mode(path) == 0o600
        path.write_bytes(b"clear video")  # reopened by name: the mode stays
        assert mode(path) == 0o600
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), scratch_file(tmp_path) as path:
        raise RuntimeError("encoding failed")
    assert list(tmp_path.iterdir()) == []


def test_read_nofollow_refuses_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert read_nofollow(real) == b"data"
    with pytest.raises(OSError):
        read_nofollow(link)


def test_private_dir_creates_0700_folders_and_leaves_existing_ones(
    tmp_path: Path, permissive_umask: int
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    leaf = shared / "edge" / "data"
    assert private_dir(leaf) == leaf
    assert mode(shared / "edge") == 0o700
    assert mode(leaf) == 0o700
    assert mode(shared) == 0o755  # not ours to tighten
    assert private_dir(leaf) == leaf  # idempotent


def test_private_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(b"")
    with pytest.raises(OSError):
        private_dir(tmp_path / "data" / "snapshots")


def test_private_file_creates_or_tightens(tmp_path: Path, permissive_umask: int) -> None:
    new = tmp_path / "new.db"
    private_file(new)
    assert new.read_bytes() == b""
    assert mode(new) == 0o600
    old = tmp_path / "old.db"
    old.write_bytes(b"rows")
    old.chmod(0o644)
    private_file(old)
    assert old.read_bytes() == b"rows"
    assert mode(old) == 0o600
    assert loose_bits(old.stat().st_mode) == 0
    assert loose_bits(0o100644) == 0o044
