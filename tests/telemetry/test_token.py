"""Loading the health endpoint's bearer token: from a 0600 file or an environment variable,
refused with a clear reason that never contains the token itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_app.config import HealthConfig
from edge_app.errors import ConfigError
from edge_app.telemetry import load_token

TOKEN = "k5Qy7-Vf1rZs0_pLx9aWc3NmE2uTbHdG"


def token_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "health.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def refusal(health: HealthConfig, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_token(health, environ or {})
    (error,) = info.value.errors
    return f"{error.path}: {error.message}"


def test_a_0600_file_gives_the_token(tmp_path: Path) -> None:
    path = token_file(tmp_path, TOKEN + "\n")
    token = load_token(HealthConfig(host="0.0.0.0", token_file=path))
    assert token is not None
    assert token.matches(f"Bearer {TOKEN}")


def test_the_environment_gives_the_token() -> None:
    token = load_token(HealthConfig(token_env="EDGE_HEALTH_TOKEN"), {"EDGE_HEALTH_TOKEN": TOKEN})
    assert token is not None
    assert token.matches(f"Bearer {TOKEN}")


def test_no_token_configured_means_none() -> None:
    assert load_token(HealthConfig(), {"EDGE_HEALTH_TOKEN": TOKEN}) is None


def test_a_file_others_may_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = token_file(tmp_path, TOKEN, 0o644)
    message = refusal(HealthConfig(token_file=path))
    assert message.startswith("health.token_file: mode 0644")
    assert f"chmod 600 {path}" in message
    assert TOKEN not in message


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_a_file_that_is_not_a_token_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "health.token"
    if kind == "directory":
        path.mkdir(mode=0o700)
    elif kind == "fifo":
        os.mkfifo(path, 0o600)  # must not hang the start waiting for a writer
    message = refusal(HealthConfig(token_file=path))
    assert message.startswith("health.token_file: ")
    assert ("cannot open" in message) if kind == "missing" else ("not a regular file" in message)


@pytest.mark.parametrize("text", ["", "short-secret\n", "has spaces in the token value\n"])
def test_a_weak_or_malformed_token_is_refused_without_echoing_it(tmp_path: Path, text: str) -> None:
    message = refusal(HealthConfig(token_file=token_file(tmp_path, text)))
    assert "at least 16 characters" in message
    assert not text.strip() or text.strip() not in message


def test_an_unset_variable_is_refused_by_name() -> None:
    message = refusal(HealthConfig(token_env="EDGE_HEALTH_TOKEN"), {"OTHER": TOKEN})
    assert message.startswith("health.token_env: environment variable EDGE_HEALTH_TOKEN")
    assert TOKEN not in message
