"""Every line ``edge-app`` and ``python -m simulator`` print goes through the redaction:
argument errors, error lines, ``config show``, unexpected errors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_app.cli import EXIT_BUG, main
from simulator.__main__ import main as simulator_main

PASSWORD = "pw-5f0c1e"
TOKEN = "tok-9a7b2d"
SECRET_URL = f"rtsp://admin:{PASSWORD}@cam.local:554/live?token={TOKEN}"
SHOWN_URL = "rtsp://***@cam.local:554/live?token=***"
ENDPOINT = f"http://AKIDEXAMPLE:{PASSWORD}@127.0.0.1:4566/?X-Amz-Security-Token={TOKEN}"


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert TOKEN not in text
        assert "admin" not in text


def write_config(tmp_path: Path) -> Path:
    doc: dict[str, Any] = {
        "device": {"thing_name": "cam-1", "data_dir": "data"},
        "cameras": [{"name": "dock", "source": {"type": "url", "url": SECRET_URL}}],
        "metrics": {"endpoint_url": ENDPOINT},
        "cloudwatch_logs": {"endpoint_url": ENDPOINT},
        "uplink": {"enabled": False},
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_config_show_hides_url_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["config", "show", str(config)]) == 0
    out, err = capsys.readouterr()
    assert_clean(out, err)
    shown = yaml.safe_load(out)
    assert shown["cameras"][0]["source"]["url"] == SHOWN_URL  # still tells which camera
    assert shown["metrics"]["endpoint_url"] == "http://***@127.0.0.1:4566/?X-Amz-Security-Token=***"


def test_config_show_json_stays_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(write_config(tmp_path)), "--json"]) == 0
    out, _ = capsys.readouterr()
    assert_clean(out)
    assert json.loads(out)["config"]["cameras"][0]["source"]["url"] == SHOWN_URL


def test_argument_errors_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "validate", "edge.yaml", SECRET_URL])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert_clean(out, err)
    assert f"unrecognized arguments: {SHOWN_URL}" in err


def test_error_lines_are_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # pathlib turns "rtsp://" into "rtsp:/": still found and hidden
    assert main(["outbox", "--db", SECRET_URL, "status"]) == 2
    out, err = capsys.readouterr()
    assert_clean(out, err)
    assert "edge-app outbox: no outbox at rtsp:/***@cam.local:554/live?token=***" in err


def test_an_unexpected_error_is_reported_through_the_redaction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        def crash(args: argparse.Namespace) -> int:
            raise RuntimeError(f"could not open {SECRET_URL}")

        sub.add_parser("crash").set_defaults(func=crash)

    before = sys.stdout, sys.stderr
    assert main(["crash"], commands=[register]) == EXIT_BUG
    assert (sys.stdout, sys.stderr) == before  # the wrapped streams are put back
    _, err = capsys.readouterr()
    assert_clean(err)
    assert "edge-app: internal error" in err
    assert "Traceback" in err  # a bug keeps its traceback, without the secrets
    assert f"RuntimeError: could not open {SHOWN_URL}" in err


def test_simulator_output_is_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert simulator_main(["replay", SECRET_URL, "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert_clean(out, err)
    assert "replay: video file not found: rtsp:/***@cam.local:554/live?token=***" in err
