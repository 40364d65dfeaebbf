"""Who may use the status page: the token when LAN-bound (header or the login's session
cookie), the CSRF check on every POST, the Host check against DNS rebinding on loopback.

The real app (real model, a generated scene, no uplink) serves the page; requests are made
with ``http.client`` so that nothing (redirects, cookies) is done behind the test's back.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from edge_app.app import EdgeApp
from edge_app.config import parse_config
from simulator.broker import free_port
from simulator.scene import SceneTruth
from tests.factories import wait_until
from tests.telemetry.test_http_guard import lan_address

TOKEN = "ui-test-token-0123456789abcdef"


def app_for(tmp: Path, clip: Path, model: Path, host: str, *, token: bool) -> EdgeApp:
    health: dict[str, object] = {"host": host, "port": free_port()}
    if token:
        path = tmp / "token"
        path.write_text(TOKEN)
        path.chmod(0o600)
        health["token_file"] = str(path)
    config = parse_config(
        {
            "device": {"thing_name": "ui-access", "data_dir": str(tmp / "data")},
            "cameras": [
                {
                    "name": "yard",
                    "source": {"type": "file", "path": str(clip), "realtime": True, "loop": True},
                }
            ],
            "detector": {"model_dir": str(model.parent)},
            "rules": [{"name": "anyone", "labels": ["person"], "min_score": 0.5}],
            "uplink": {"enabled": False},
            "health": health,
            "log_level": "warning",
        }
    )
    return EdgeApp(config)


@pytest.fixture
def lan_app(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> Iterator[tuple[str, int, EdgeApp]]:
    host = lan_address()
    if host == "127.0.0.1":
        pytest.skip("this machine has no non-loopback IPv4 address")
    app = app_for(tmp_path, scene[0], default_model, host, token=True)
    with app:
        yield host, app._config.health.port, app


def call(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def csrf_of(page: bytes) -> str:
    found = re.search(rb'name="csrf(?:-token)?" (?:content|value)="([^"]+)"', page)
    assert found is not None
    return found.group(1).decode()


def test_a_lan_bound_page_and_its_api_refuse_access_without_the_token(
    lan_app: tuple[str, int, EdgeApp],
) -> None:
    host, port, app = lan_app
    assert wait_until(lambda: app.stats().events >= 1)
    for path in (
        "/ui/api/state",
        "/ui/api/events",
        "/ui/live/yard.jpg",
        "/ui/static/app.js",
        "/ui/api/zones?camera=yard",
    ):
        code, _, body = call(host, port, "GET", path)
        assert code == 401, path
        assert b"sign in at /ui/login" in body
    code, headers, _ = call(host, port, "GET", "/ui/")
    assert (code, headers["Location"]) == (303, "/ui/login")
    review = json.dumps({"event_id": "0" * 26, "verdict": "confirmed"}).encode()
    assert call(host, port, "POST", "/ui/api/review", review)[0] == 401
    # a wrong session cookie is no session
    assert (
        call(host, port, "GET", "/ui/api/state", headers={"Cookie": "edge_app_session=x"})[0] == 401
    )
    # the token as a bearer header opens the API (scripts, probes)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    code, _, body = call(host, port, "GET", "/ui/api/state", headers=bearer)
    assert code == 200
    assert json.loads(body)["device"] == "ui-access"


def test_login_sets_a_strict_httponly_session_and_posts_need_the_csrf_secret(
    lan_app: tuple[str, int, EdgeApp],
) -> None:
    host, port, app = lan_app
    code, _, form = call(host, port, "GET", "/ui/login")
    assert code == 200
    csrf = csrf_of(form)
    assert TOKEN.encode() not in form
    plain = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = urlencode({"csrf": csrf, "token": "not-the-token-at-all-000"}).encode()
    code, headers, _ = call(host, port, "POST", "/ui/login", wrong, plain)
    assert code == 401
    assert "Set-Cookie" not in headers
    # a cross-site login (another site's form cannot know the CSRF secret) is refused
    forged = urlencode({"token": TOKEN}).encode()
    assert call(host, port, "POST", "/ui/login", forged, plain)[0] == 403
    right = urlencode({"csrf": csrf, "token": TOKEN}).encode()
    code, headers, _ = call(host, port, "POST", "/ui/login", right, plain)
    assert code == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    session = {"Cookie": cookie.split(";", 1)[0]}
    code, _, page = call(host, port, "GET", "/ui/", headers=session)
    assert code == 200
    assert csrf_of(page) == csrf
    assert call(host, port, "GET", "/ui/api/state", headers=session)[0] == 200

    assert wait_until(lambda: app.stats().events >= 1)
    code, _, listing = call(host, port, "GET", "/ui/api/events?rule=anyone", headers=session)
    event_id = json.loads(listing)["events"][0]["event"]["id"]
    verdict = json.dumps({"event_id": event_id, "verdict": "rejected"}).encode()
    json_type = {"Content-Type": "application/json"}
    # signed in, but without the CSRF header: refused, nothing stored
    depth = app.outbox.stats().last_seq
    assert call(host, port, "POST", "/ui/api/review", verdict, {**session, **json_type})[0] == 403
    # the header, but from another origin: refused
    evil = {**session, **json_type, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert call(host, port, "POST", "/ui/api/review", verdict, evil)[0] == 403
    assert app.outbox.stats().last_seq == depth
    ok = {**session, **json_type, "X-CSRF-Token": csrf, "Origin": f"http://{host}:{port}"}
    code, _, body = call(host, port, "POST", "/ui/api/review", verdict, ok)
    assert code == 200
    assert json.loads(body)["verdict"] == "rejected"
    assert app.outbox.stats().last_seq == depth + 1


def test_loopback_refuses_a_forged_cross_site_post_and_a_rebound_host_name(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    app = app_for(tmp_path, scene[0], default_model, "127.0.0.1", token=False)
    with app:
        port = app._config.health.port
        host = "127.0.0.1"
        assert wait_until(lambda: app.stats().events >= 1)
        # what a page on another site can send: a form or fetch with no CSRF secret
        zones = json.dumps({"camera": "yard", "zones": []}).encode()
        forged = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        code, _, body = call(host, port, "POST", "/ui/api/zones", zones, forged)
        assert code == 403
        assert b"X-CSRF-Token" in body
        before = app.snapshot.digest
        # DNS rebinding: evil.example resolving to 127.0.0.1 sends its own name as Host
        rebound = {"Host": f"evil.example:{port}"}
        code, _, body = call(host, port, "GET", "/ui/api/state", headers=rebound)
        assert code == 421
        assert b"Host" in body
        # the page itself works: same origin, with the secret
        code, _, page = call(host, port, "GET", "/ui/")
        assert code == 200
        signed = {"X-CSRF-Token": csrf_of(page), "Origin": f"http://{host}:{port}"}
        area = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
        change = json.dumps({"camera": "yard", "zones": [{"name": "all", "polygon": area}]})
        code, _, body = call(host, port, "POST", "/ui/api/zones", change.encode(), signed)
        assert code == 200
        assert json.loads(body)["status"] == "applied"
        assert app.snapshot.digest != before


def test_the_browser_signs_in_with_the_token(
    lan_app: tuple[str, int, EdgeApp], browser: WebDriver
) -> None:
    host, port, _ = lan_app
    browser.get(f"http://{host}:{port}/ui/")
    assert browser.current_url.endswith("/ui/login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    assert wait_until(lambda: browser.current_url.endswith("/ui/"))
    assert wait_until(lambda: browser.find_element(By.ID, "device").text == "ui-access")
    assert wait_until(
        lambda: browser.execute_script("return document.getElementById('live').naturalWidth > 0")
    )
    # the session cookie is invisible to the page's scripts
    assert "edge_app_session" not in str(browser.execute_script("return document.cookie"))
