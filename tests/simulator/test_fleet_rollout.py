"""``python -m simulator fleet --replay CLIP --rollout``: a model rollout to a small fleet.

One real run for the module: 3 replay devices (the real daemon, the ``default_model``, on the
generated scene looping), real Mosquitto with the device policy's ACLs, the Jobs emulator on
it and a real file server. The bad model job (a corrupt copy: the download verifies, the load
fails) must fail on the canary and be CANCELED by its abort rule before any other device gets
an execution; the good job (the running model as version 2) must succeed on every device with
no frame lost, and ``/status`` and the events delivered afterwards must name the new model.
A second, 1-device run gives the canary a model that works: the run must fail (exit 1) and
say why. The rest (arguments, the text table) needs no broker.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from edge_app.models import Registry
from simulator.__main__ import main as simulator_main
from simulator.fleetrollout import DeviceRollout, RolloutReport, corrupt_copy
from simulator.fleetsim_cli import print_rollout, register, rollout_from_args
from simulator.scene import SceneTruth

THINGS = ("cam-0001", "cam-0002", "cam-0003")
NEW = "ssd_mobilenet_v2_coco@2"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
) -> tuple[int, dict[str, Any], Path]:
    clip, _ = scene
    workdir = tmp_path_factory.mktemp("rollout")
    argv = ["fleet", "--replay", str(clip), "--devices", "3", "--model", str(default_model)]
    argv += ["--rollout", "--rollout-timeout", "40", "--workdir", str(workdir), "--json"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = simulator_main(argv)
    return code, json.loads(out.getvalue()), workdir


@pytest.mark.broker
def test_the_bad_canary_fails_and_its_job_is_canceled_before_any_other_device_runs_it(
    run: tuple[int, dict[str, Any], Path],
) -> None:
    code, doc, workdir = run
    rollout = doc["rollout"]
    assert code == 0, rollout["problems"]
    assert rollout["ok"] is True
    bad = rollout["bad_job"]
    assert bad["status"] == "CANCELED"
    assert bad["reason"].startswith("aborted: FAILED")
    devices = {d["thing"]: d for d in rollout["devices"]}
    assert list(devices) == list(THINGS)
    canary = devices["cam-0001"]
    assert canary["canary"] is True
    assert canary["bad_status"] == "FAILED"
    assert "not a TensorFlow Lite model" in canary["bad_reason"]  # the updater's reason
    for thing in THINGS[1:]:
        assert devices[thing]["bad_status"] is None  # never got an execution
        assert not devices[thing]["bad_reason"]
    # Every device's registry holds only the good version: the canary refused the bad one
    # before registering it, the others never downloaded it.
    for thing in THINGS:
        entries = Registry(workdir / "devices" / thing / "models").entries()
        assert [(e.name, e.version) for e in entries] == [("ssd_mobilenet_v2_coco", "2")]
    for thing in THINGS[1:]:
        downloads = workdir / "devices" / thing / "models" / "downloads"
        assert not downloads.exists() or not any(downloads.iterdir())


@pytest.mark.broker
def test_the_new_model_reaches_every_device_with_no_frame_lost(
    run: tuple[int, dict[str, Any], Path],
) -> None:
    code, doc, _ = run
    rollout = doc["rollout"]
    assert code == 0, rollout["problems"]
    good = rollout["good_job"]
    assert good["model"] == NEW
    assert good["status"] == "COMPLETED"
    assert good["all_succeeded_s"] is not None
    assert good["all_succeeded_s"] > 0
    for device in rollout["devices"]:
        assert device["status"] == "SUCCEEDED", device["reason"]
        assert device["model_before"] == "ssd_mobilenet_v2_coco"
        assert device["model_after"] == NEW
        assert device["status_model"] == NEW  # the daemon's own /status
        assert device["new_events"] > 0
        assert device["events_on_new"] is True  # delivered events name the new model
        assert device["lost_frames"] == 0
        assert device["agreement"] == 1.0  # the same network on the same frames
        assert set(device["stages_s"]) == {"download_s", "test_run_s", "switch_s", "watch_s"}
        assert 0 < device["succeeded_s"] <= good["all_succeeded_s"]
    # the delivery books of the same run are complete too
    assert doc["complete"] is True
    assert doc["totals"]["missing"] == 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["fleet", *argv])


def test_the_rollout_needs_replay_devices_and_existing_files(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert rollout_from_args(parse(["--replay", str(clip)])) is None
    with pytest.raises(ValueError, match="--rollout needs --replay"):
        rollout_from_args(parse(["--rollout"]))
    with pytest.raises(ValueError, match="--bad-model goes with --rollout"):
        rollout_from_args(parse(["--replay", str(clip), "--bad-model", str(clip)]))
    with pytest.raises(ValueError, match="no such file"):
        rollout_from_args(
            parse(["--replay", str(clip), "--rollout", "--new-model", str(tmp_path / "x")])
        )
    with pytest.raises(ValueError, match="without outages"):
        rollout_from_args(parse(["--replay", str(clip), "--rollout", "--outage", "cam-0001:1:1"]))
    plan = rollout_from_args(parse(["--replay", str(clip), "--rollout", "--bad-model", str(clip)]))
    assert plan is not None
    assert plan.bad_model == clip


def test_a_bad_argument_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulator_main(["fleet", "--rollout"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "fleet: --rollout needs --replay CLIP (the devices run the daemon)"


def test_the_corrupt_copy_keeps_the_size_and_changes_the_hash(
    tmp_path: Path, default_model: Path
) -> None:
    bad = corrupt_copy(default_model, tmp_path / "bad.tflite")
    assert bad.stat().st_size == default_model.stat().st_size
    assert bad.read_bytes()[4:8] == b"XXXX"
    assert default_model.read_bytes()[4:8] == b"TFL3"


def test_a_failed_rollout_says_what_went_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    row = DeviceRollout("cam-0001", canary=True, bad_status="SUCCEEDED", lost_frames=2)
    report = RolloutReport(devices=[row], problems=["canary cam-0001: SUCCEEDED, not FAILED"])
    print_rollout(report)
    out = capsys.readouterr().out
    assert "cam-0001 (canary)  SUCCEEDED" in out
    assert out.strip().endswith("rollout: FAILED: canary cam-0001: SUCCEEDED, not FAILED")
    assert report.ok is False


@pytest.mark.broker
def test_a_canary_that_does_not_fail_makes_the_run_fail(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    clip, _ = scene
    argv = ["fleet", "--replay", str(clip), "--devices", "1", "--model", str(default_model)]
    argv += ["--rollout", "--bad-model", str(default_model), "--rollout-timeout", "40"]
    argv += ["--workdir", str(tmp_path), "--json"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = simulator_main(argv)
    rollout = json.loads(out.getvalue())["rollout"]
    assert code == 1
    assert rollout["ok"] is False
    # the "bad" model is a good one: the canary switched to it and nothing aborted the job
    assert rollout["devices"][0]["bad_status"] == "SUCCEEDED"
    assert "canary cam-0001: SUCCEEDED, not FAILED" in rollout["problems"]
    assert "bad model job COMPLETED, not CANCELED" in rollout["problems"]
