"""The status page end to end in headless Chromium, on a replayed real clip.

The real app (real model, mutual TLS to a real Mosquitto through a proxy that can cut the
link, the shadow emulator, a cloud consumer) serves the page; Chromium loads it, watches the
live image update and a new event appear with its thumbnail, sees the health panel change
when the broker goes away, draws a zone with mouse events and saves it (the running config
changes, the shadow agrees and the audit event is delivered), and confirms an event (the
verdict is stored, shown and delivered). Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from edge_app.app import EdgeApp
from edge_app.config import AppConfig, parse_config
from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki
from simulator.cloud import CloudConsumer
from simulator.proxy import TcpProxy
from simulator.shadow import ShadowService
from tests.app.test_app import tls
from tests.app.test_remote_config import model_dir
from tests.factories import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.realworld]

THING = "ui-e2e"
WAIT_S = 30.0
CLIP = "videos/one-by-one-person-detection.mp4"  # a person walks in at ~10 s


def page_config(
    tmp: Path, clip: Path, cache: Path, uplink_port: int, pki: Pki, http_port: int
) -> AppConfig:
    return parse_config(
        {
            "device": {"thing_name": THING, "data_dir": str(tmp / "data")},
            "cameras": [
                {
                    "name": "desk",
                    "source": {
                        "type": "file",
                        "path": str(clip),
                        "realtime": True,
                        "speed": 2.0,
                        "loop": True,
                        "start_s": 9.0,
                    },
                }
            ],
            "detector": {"model_dir": str(cache), "score_threshold": 0.4},
            "rules": [
                {
                    "name": "person",
                    "labels": ["person"],
                    "min_score": 0.5,
                    "min_frames": 2,
                    "review_band": [0.5, 0.95],
                }
            ],
            "uplink": {
                "host": "127.0.0.1",
                "port": uplink_port,
                "tls": tls(pki),
                "reconnect": {"min_s": 0.1, "max_s": 0.5},
                "batch": {"max_wait_s": 0.05},
            },
            "health": {"port": http_port, "uplink_down_s": 1.0},
            "log_level": "warning",
        }
    )


def js(driver: WebDriver, script: str) -> Any:
    return driver.execute_script(script)


def until(predicate: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    assert wait_until(lambda: bool(predicate()), timeout), f"timed out waiting for {what}"


def test_the_page_on_a_real_clip(
    tmp_path: Path,
    browser: WebDriver,
    realworld: Path,
    default_model: Path,
    broker: Mosquitto,
    pki: Pki,
) -> None:
    http_port = free_port()
    delivered: list[dict[str, Any]] = []
    cloud = CloudConsumer(
        broker.host, broker.port, topic=f"edge-app/{THING}/events", client_id="cloud-ui-e2e"
    )
    cloud.on_batch = lambda batch: delivered.extend(batch["events"])
    shadow = ShadowService(broker.host, broker.port, client_id=f"shadow-{time.monotonic_ns()}")
    network = TcpProxy(free_port(), broker.host, broker.tls_port)
    cache = model_dir(tmp_path, default_model)
    config = page_config(tmp_path, realworld / CLIP, cache, network.listen_port, pki, http_port)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with cloud, shadow, network, EdgeApp(config) as app:
        network.up()
        until(lambda: app.stats().uplink_connected, "the uplink")
        browser.get(f"http://127.0.0.1:{http_port}/ui/")

        # the live image loads, then updates (a new JPEG replaces it)
        def live_src() -> str | None:
            done = js(
                browser,
                "const i = document.getElementById('live');"
                "return i.complete && i.naturalWidth > 0 ? i.src : null;",
            )
            return done if isinstance(done, str) else None

        until(live_src, "the first live frame")
        first = live_src()
        until(lambda: live_src() not in (None, first), "a second live frame")
        assert js(browser, "return document.getElementById('live').naturalWidth") == 768

        # a new event appears with its thumbnail
        thumb = "#events tbody tr[data-rule='person'] img.thumb"
        until(
            lambda: js(
                browser,
                f'const i = document.querySelector("{thumb}");'
                "return i !== null && i.complete && i.naturalWidth > 0;",
            ),
            "a person event with its thumbnail",
        )
        browser.save_screenshot(str(shots / "1-live-and-event.png"))

        # the health panel follows the link: down, then up again
        def uplink_shown() -> str:
            return str(js(browser, "return document.getElementById('health').dataset.uplink"))

        until(lambda: uplink_shown() == "up", "the panel showing the uplink up")
        network.down()
        until(lambda: uplink_shown() == "down", "the panel showing the uplink down")
        until(
            lambda: browser.find_element(By.ID, "health-state").text == "degraded",
            "health degraded",
        )
        assert "uplink" in browser.find_element(By.ID, "reasons").text
        browser.save_screenshot(str(shots / "2-broker-down.png"))
        network.up()
        until(lambda: uplink_shown() == "up", "the panel showing the uplink back")

        # draw a zone with the mouse; saving changes the running config
        name = browser.find_element(By.ID, "zone-name")
        name.clear()
        name.send_keys("table")
        browser.find_element(By.ID, "zone-new").click()
        canvas = browser.find_element(By.ID, "zones-canvas")
        w, h = canvas.size["width"], canvas.size["height"]
        corners = [(0.2, 0.3), (0.8, 0.3), (0.8, 0.9), (0.2, 0.9)]
        for fx, fy in corners:  # offsets from the canvas centre
            ActionChains(browser).move_to_element_with_offset(
                canvas, int((fx - 0.5) * w), int((fy - 0.5) * h)
            ).click().perform()
        browser.find_element(By.ID, "zone-finish").click()
        browser.find_element(By.ID, "zone-save").click()
        until(
            lambda: browser.find_element(By.ID, "zone-status").text.startswith("applied"),
            "the zone change applied",
        )
        browser.save_screenshot(str(shots / "3-zone.png"))
        zones = app.snapshot.config.cameras[0].zones
        assert [z.name for z in zones] == ["table"]
        for (x, y), (fx, fy) in zip(zones[0].polygon, corners, strict=True):
            assert abs(x - fx) < 0.02
            assert abs(y - fy) < 0.02
        digest = app.snapshot.digest
        # the shadow agrees: desired holds the zone, reported what runs; no delta to undo it
        until(lambda: _reported_digest(shadow.document(THING)) == digest, "the shadow report")
        doc = shadow.document(THING)
        assert doc is not None
        assert doc["state"]["desired"]["cameras"]["desk"]["zones"][0]["name"] == "table"
        assert "delta" not in doc["state"]
        until(
            lambda: any(
                e["rule"] == "config"
                and e["config"].get("origin") == "local"
                and e["config"]["digest"] == digest
                for e in delivered
            ),
            "the audit event of the local change delivered",
        )

        # a review verdict: stored, shown in the list, delivered linked to the original
        button = "#events tbody tr[data-rule='person'] button.review-confirmed"
        until(lambda: browser.find_elements(By.CSS_SELECTOR, button), "a reviewable event")
        row = browser.find_element(By.CSS_SELECTOR, button).find_element(By.XPATH, "./../..")
        reviewed = row.get_attribute("data-id")
        browser.find_element(By.CSS_SELECTOR, button).click()
        shown = f"#events tbody tr[data-id='{reviewed}'] .verdict"
        until(
            lambda: (
                "confirmed"
                in " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, shown))
            ),
            "the verdict shown",
        )
        until(
            lambda: any(
                e["rule"] == "review"
                and e.get("review_of") == reviewed
                and e["verdict"] == "confirmed"
                for e in delivered
            ),
            "the review event delivered",
        )
        browser.save_screenshot(str(shots / "4-reviewed.png"))
        events = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ui/api/events?limit=200").read()
        )["events"]
        assert any(
            i["event"]["id"] == reviewed and i["verdict"]["verdict"] == "confirmed" for i in events
        )
    for png in shots.iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _reported_digest(doc: dict[str, Any] | None) -> object:
    try:
        return doc["state"]["reported"]["config"]["digest"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
