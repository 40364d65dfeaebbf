"""Encryption at rest, the parts below the store: the sealed format, keys, config, the CLI."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_app.atrest import (
    OVERHEAD_BYTES,
    Sealer,
    generate_key_file,
    is_sealed,
    key_id,
    load_sealer,
    read_key_file,
    read_stored,
    sealed_file,
    sealed_key_id,
)
from edge_app.cli import main
from edge_app.config import parse_config, validate_overlay
from edge_app.errors import ConfigError, EncryptionError
from tests.conftest import REPO_ROOT

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def key_file(path: Path, key: bytes = KEY, mode: int = 0o600) -> Path:
    path.write_bytes(base64.b64encode(key) + b"\n")
    path.chmod(mode)
    return path


def test_sealed_items_round_trip_and_describe_themselves() -> None:
    sealer = Sealer(KEY)
    one, two = sealer.seal(b"payload", b"ctx"), sealer.seal(b"payload", b"ctx")
    assert one != two  # a fresh random nonce per item
    assert one[:4] == b"EAS1"
    assert is_sealed(one)
    assert not is_sealed("{}")
    assert sealed_key_id(one) == key_id(KEY) == sealer.key_id
    assert len(one) == len(b"payload") + OVERHEAD_BYTES == len(b"payload") + 36
    assert b"payload" not in one
    assert sealer.open(one, b"ctx") == b"payload"
    assert KEY.hex() not in repr(sealer)
    assert sealer.key_id in repr(sealer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b, "encrypted with key id"),  # opened with another key
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "fails authentication"),  # tag altered
        (lambda b: b[:24] + bytes([b[24] ^ 1]) + b[25:], "fails authentication"),  # ciphertext
        (lambda b: b[:30], "truncated"),
        (lambda b: b"EAS9" + b[4:], "not sealed in a format"),
    ],
)
def test_what_does_not_open_says_why(change: Callable[[bytes], bytes], message: str) -> None:
    sealed = Sealer(KEY).seal(b"some clear bytes", b"ctx")
    opener = Sealer(OTHER) if message == "encrypted with key id" else Sealer(KEY)
    with pytest.raises(EncryptionError, match=message):
        opener.open(change(sealed), b"ctx")


def test_an_item_moved_to_another_context_does_not_open() -> None:
    sealer = Sealer(KEY)
    with pytest.raises(EncryptionError, match="moved from another row or file"):
        sealer.open(sealer.seal(b"row A", b"event A"), b"event B")


def test_key_files_raw_or_base64_and_never_open_to_others(tmp_path: Path) -> None:
    assert read_key_file(key_file(tmp_path / "b64")) == KEY
    raw = tmp_path / "raw"
    raw.write_bytes(KEY)
    raw.chmod(0o400)
    assert read_key_file(raw) == KEY
    for mode in (0o640, 0o604, 0o660):
        with pytest.raises(EncryptionError, match=rf"mode {mode:04o}.*chmod 600"):
            read_key_file(key_file(tmp_path / f"open{mode:o}", mode=mode))
    short = tmp_path / "short"
    short.write_bytes(b"too short\n")
    short.chmod(0o600)
    with pytest.raises(EncryptionError, match=r"is not a key.*keys generate"):
        read_key_file(short)
    with pytest.raises(EncryptionError, match="cannot read the key file"):
        read_key_file(tmp_path / "absent")


def test_systemd_credential_is_read_from_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    key_file(creds / "at-rest", mode=0o440)  # systemd may grant the service user by ACL
    sealer = load_sealer(
        None, "at-rest", seal_new=True, environ={"CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert sealer is not None
    assert sealer.key_id == key_id(KEY)
    assert sealer.source == "systemd credential at-rest"
    with pytest.raises(EncryptionError, match=r"CREDENTIALS_DIRECTORY is not set.*LoadCredential"):
        load_sealer(None, "at-rest", seal_new=True, environ={})
    (creds / "at-rest").chmod(0o444)
    with pytest.raises(EncryptionError, match="others may access it"):
        load_sealer(None, "at-rest", seal_new=True, environ={"CREDENTIALS_DIRECTORY": str(creds)})


@pytest.mark.slow
def test_keys_generate_writes_a_private_key_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "at-rest.key"
    assert main(["keys", "generate", str(path)]) == 0
    out = capsys.readouterr().out
    assert path.stat().st_mode & 0o777 == 0o600
    key = read_key_file(path)
    assert f"key id {key_id(key)}" in out
    assert path.read_text().strip() not in out  # the key itself is never printed
    before = path.read_bytes()
    assert main(["keys", "generate", str(path)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["keys", "check", str(path)]) == 0
    assert key_id(key) in capsys.readouterr().out
    path.chmod(0o644)
    assert main(["keys", "check", str(path)]) == 2
    assert "chmod 600" in capsys.readouterr().err
    assert generate_key_file(tmp_path / "second") != key_id(key)  # random, not derived


def test_keys_generate_never_follows_a_link_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.key"
    link = tmp_path / "at-rest.key"
    link.symlink_to(target)  # dangling: creating through it would make ``target``
    with pytest.raises(EncryptionError, match="never overwritten"):
        generate_key_file(link)
    assert not target.exists()
    old = os.umask(0o022)
    try:
        generate_key_file(tmp_path / "new.key")
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["at-rest.key", "new.key"]
    assert (tmp_path / "new.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(EncryptionError, match="cannot create the key file"):
        generate_key_file(tmp_path / "no such folder" / "k.key")


def test_sealed_files_lie_beside_their_clear_name(tmp_path: Path) -> None:
    sealer = Sealer(KEY)
    path, data = sealed_file(sealer, tmp_path / "E1.jpg", b"\xff\xd8jpeg")
    assert path.name == "E1.jpg.enc"
    assert is_sealed(data)
    path.write_bytes(data)
    assert read_stored(tmp_path / "E1.jpg", sealer) == b"\xff\xd8jpeg"
    (tmp_path / "E0.jpg").write_bytes(b"\xff\xd8old")  # written before encryption was on
    assert read_stored(tmp_path / "E0.jpg", sealer) == b"\xff\xd8old"
    with pytest.raises(EncryptionError, match="encrypted and no key is configured"):
        read_stored(tmp_path / "E1.jpg", None)
    path.rename(tmp_path / "E2.jpg.enc")  # another event's name
    with pytest.raises(EncryptionError, match="moved from another row or file"):
        read_stored(tmp_path / "E2.jpg", sealer)
    reader = Sealer(KEY, seal_new=False)  # encryption turned off: new files are clear
    assert sealed_file(reader, tmp_path / "E3.jpg", b"x") == (tmp_path / "E3.jpg", b"x")


def test_config_needs_one_key_and_encryption_is_never_remote(tmp_path: Path) -> None:
    base = {
        "device": {"thing_name": "cam-1"},
        "cameras": [{"name": "a", "source": {"type": "usb"}}],
        "uplink": {"enabled": False},
    }
    with pytest.raises(ConfigError, match=r"encryption\.enabled needs a key"):
        parse_config({**base, "encryption": {"enabled": True}})
    with pytest.raises(ConfigError, match="not both"):
        parse_config({**base, "encryption": {"key_file": "k", "credential": "k"}})
    with pytest.raises(ConfigError, match="credential"):
        parse_config({**base, "encryption": {"credential": "../etc/shadow"}})
    config = parse_config(
        {**base, "encryption": {"enabled": True, "key_file": "k"}}, base_dir=tmp_path
    )
    assert config.encryption.key_file == tmp_path / "k"  # relative to the config file
    for desired in (
        {"encryption": {"enabled": False}},
        {"encryption": {"key_file": "/tmp/attacker.key"}},
    ):
        with pytest.raises(ConfigError, match="not remotely settable"):
            validate_overlay(desired, config, ["ssd_mobilenet_v2_coco"])


@pytest.mark.slow
def test_missing_cryptography_package_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "device: {thing_name: cam-1, data_dir: data}\n"
        "cameras: [{name: a, source: {type: usb}}]\n"
        f"encryption: {{enabled: true, key_file: {key_file(tmp_path / 'k')}}}\n"
        "uplink: {enabled: false}\nhealth: {enabled: false}\n"
    )
    # A None entry in sys.modules makes `import cryptography` fail as if it were not installed.
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from edge_app.cli import main\n"
        f"sys.exit(main(['run', '--config', {str(config)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'edge-app[encryption]'" in done.stderr
    assert "Traceback" not in done.stderr
