"""The real appliance, run under the common umask 022, leaves nothing readable by others in
its data directory: every folder 0700, every file 0600 (outbox, -wal, -shm, .seq, snapshots,
clips, and their encrypted ``.enc`` forms with encryption at rest), while it runs and after it
stopped."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from edge_app.app import EdgeApp
from edge_app.atrest import generate_key_file
from edge_app.config import parse_config
from edge_app.errors import ConfigError
from edge_app.uplink import InMemoryTransport
from simulator.scene import SceneTruth
from tests.app.test_app import app_config


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_everything_in_data_dir_is_private_under_umask_022(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth], encrypted: bool
) -> None:
    clip, _ = scene
    base = app_config(tmp_path, clip, default_model, insecure_plaintext=True).model_dump(
        mode="json", exclude_none=True
    )
    base["cameras"][0]["clips"] = {"pre_s": 1.0, "post_s": 1.0, "fps": 5, "width": 320}
    suffix = ".enc" if encrypted else ""
    if encrypted:
        generate_key_file(tmp_path / "at-rest.key")
        base["encryption"] = {"enabled": True, "key_file": str(tmp_path / "at-rest.key")}
    config = parse_config(base)
    data = config.device.data_dir
    old = os.umask(0o022)
    try:
        with EdgeApp(config, transport=InMemoryTransport()) as app:
            app.wait()
            running = modes(data) | {".": stat.S_IMODE(data.stat().st_mode)}
        stopped = modes(data)
    finally:
        os.umask(old)
    names = {Path(k).name for k in running}
    assert {"outbox.db", "outbox.db-wal", "outbox.db-shm", "outbox.db.seq"} <= names
    assert any(k.endswith(".mp4" + suffix) for k in running), "no clip was written"
    assert any(k.endswith(".crop.jpg" + suffix) for k in running), "no snapshot was written"
    if encrypted:
        assert not any(k.endswith((".mp4", ".jpg")) for k in running | stopped)
    for seen in (running, stopped):
        loose = {k: oct(m) for k, m in seen.items() if m not in (0o600, 0o700)}
        assert loose == {}
        folders = {k for k in seen if (data / k).is_dir()}
        assert all(seen[k] == 0o700 for k in folders)


def test_an_existing_open_data_dir_is_reported_and_left_as_it_is(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clip, _ = scene
    config = app_config(tmp_path, clip, default_model, enabled=False)
    data = config.device.data_dir
    data.mkdir()
    data.chmod(0o755)  # made by an older version, or by hand
    with caplog.at_level(logging.WARNING, logger="edge_app.app"), EdgeApp(config) as app:
        app.wait()
    assert "is open to group or others (mode 755)" in caplog.text
    assert "chmod 700" in caplog.text
    assert stat.S_IMODE(data.stat().st_mode) == 0o755
    assert stat.S_IMODE(config.outbox_path.stat().st_mode) == 0o600


def test_a_data_dir_that_cannot_be_created_is_a_clear_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    config = parse_config(
        {
            "device": {"thing_name": "cam-1", "data_dir": str(tmp_path / "file" / "data")},
            "cameras": [{"name": "yard", "source": {"type": "usb"}}],
            "uplink": {"enabled": False},
        }
    )
    with pytest.raises(ConfigError) as info:
        EdgeApp(config).start()
    assert "device.data_dir: cannot create" in str(info.value)
