"""The screens over real HTTP(S) on loopback, without a browser's help: every layer of
the CSRF defence on its own, bad input, sessions, streams, metrics, TLS and the config."""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.errors import ConfigError, ScreensError
from appliance.gate.agents import AgentCommand
from appliance.gate.machine import State
from appliance.screens.board import DISPLAY_FIELDS, SUMMARY_FIELDS
from appliance.screens.server import ScreenServer
from appliance.screens.settings import ScreenSettings
from appliance.service.config import load_config
from firmware_bridge.host import OptOutPressed
from gate_contract.files import write_private
from tests.appliance.screens.conftest import AGENT, PIN
from tests.support import REPO


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def signed_in(client: httpx.Client) -> str:
    token = csrf_of(client.get("/agent").text)
    answer = client.post("/agent/login", data={"csrf": token, "agent_id": AGENT, "credential": PIN})
    assert answer.status_code == 303
    return csrf_of(client.get("/agent").text)


def first_event(client: httpx.Client, path: str, **kw) -> tuple[httpx.Response, dict]:
    with client.stream("GET", path, timeout=10, **kw) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                return response, json.loads(line[5:])
    raise AssertionError("no event")


def refused(unit) -> dict[str, float]:
    families = text_string_to_metric_families(httpx.get(unit.url + "/metrics").text)
    return {
        s.labels["reason"]: s.value
        for f in families
        if f.name == "gate_web_requests_refused"
        for s in f.samples
        if s.name.endswith("_total") and s.value
    }


def test_every_response_carries_the_security_headers(unit) -> None:
    for path in ("/", "/privacy", "/agent", "/static/screens.css", "/metrics", "/missing"):
        headers = httpx.get(unit.url + path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    assert httpx.get(unit.url + "/").headers["cache-control"] == "no-store"


def test_other_host_names_are_refused(unit) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 gets a plain 400."""
    answer = httpx.get(unit.url + "/agent", headers={"Host": "evil.example"})
    assert answer.status_code == 400 and "host name" in answer.text
    assert refused(unit) == {"host": 1.0}


def test_every_csrf_layer_refuses_on_its_own(unit) -> None:
    unit.link.emit(OptOutPressed())  # the gate waits for a manual check
    with httpx.Client(base_url=unit.url) as client:
        assert (
            client.post("/agent/login", data={"agent_id": AGENT, "credential": PIN}).status_code
            == 403
        )
        token = signed_in(client)
        form = {"csrf": token, "action": "release", "reason": "documents_checked"}
        assert client.post("/agent/action", data={**form, "csrf": ""}).status_code == 403
        assert client.post("/agent/action", data={**form, "csrf": "x" * 43}).status_code == 403
        evil = {"Origin": "http://127.0.0.1:1"}  # same site (SameSite ignores ports)
        assert client.post("/agent/action", data=form, headers=evil).status_code == 403
        cross = {"Sec-Fetch-Site": "same-site"}
        assert client.post("/agent/action", data=form, headers=cross).status_code == 403
        assert unit.desk.calls == [] and unit.gate.phase is State.MANUAL_CHECK
        answer = client.post("/agent/action", data=form)
        assert answer.status_code == 303
    assert unit.desk.calls == [(AGENT, AgentCommand.RELEASE, "documents_checked")]
    assert unit.gate.phase is State.AGENT_RELEASED and unit.link.pulses
    assert refused(unit) == {
        "no_session": 1.0,
        "csrf_token": 2.0,
        "origin": 1.0,
        "fetch_metadata": 1.0,
    }


def test_release_only_when_the_traveller_is_with_the_agent(unit) -> None:
    with httpx.Client(base_url=unit.url) as client:
        token = signed_in(client)
        form = {"csrf": token, "action": "release", "reason": "identity_confirmed"}
        assert client.post("/agent/action", data=form).status_code == 303
        assert "Not possible now" in client.get("/agent").text
    assert unit.desk.calls == [] and unit.link.pulses == []  # a ready gate is not opened


@pytest.mark.parametrize(
    ("body", "kind", "status"),
    [
        (b"action=release", "application/json", 415),
        (b"a=" + b"1" * 5000, "application/x-www-form-urlencoded", 413),
        (b"action=\xff\xfe", "application/x-www-form-urlencoded", 400),
        (b"&&&=", "application/x-www-form-urlencoded", 400),
    ],
)
def test_bad_forms_get_one_short_answer(unit, body: bytes, kind: str, status: int) -> None:
    answer = httpx.post(unit.url + "/agent/action", content=body, headers={"Content-Type": kind})
    assert answer.status_code == status
    assert len(answer.text) < 120 and "Traceback" not in answer.text


def test_unknown_action_or_reason_is_refused(unit) -> None:
    unit.link.emit(OptOutPressed())
    with httpx.Client(base_url=unit.url) as client:
        token = signed_in(client)
        for action, reason in (
            ("open", "documents_checked"),
            ("release", "traveller_left"),
            ("release", ""),
        ):
            data = {"csrf": token, "action": action, "reason": reason}
            assert client.post("/agent/action", data=data).status_code == 400
    assert unit.desk.calls == []


def test_session_cookie_and_sign_out(unit) -> None:
    with httpx.Client(base_url=unit.url) as client:
        form = client.get("/agent")
        token = csrf_of(form.text)
        assert "gate_sid" not in client.cookies  # no session before a sign-in
        assert "HttpOnly" in form.headers["set-cookie"]  # the sign-in form's nonce
        planted = "fixed-by-an-attacker"
        client.cookies.set("gate_sid", planted, domain="127.0.0.1", path="/")
        answer = client.post(
            "/agent/login", data={"csrf": token, "agent_id": AGENT, "credential": PIN}
        )
        cookie = next(c for c in answer.headers.get_list("set-cookie") if "gate_sid=" in c)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        signed_in_sid = client.cookies["gate_sid"]
        assert signed_in_sid not in ("", planted)  # a new id once signed in
        token = csrf_of(client.get("/agent").text)
        assert first_event(client, "/agent/events")[0].status_code == 200
        assert client.post("/agent/logout", data={"csrf": token}).status_code == 303
        client.cookies.set("gate_sid", signed_in_sid)
        assert client.get("/agent/events").status_code == 401


def test_wrong_pins_then_the_gate_wide_throttle(unit) -> None:
    with httpx.Client(base_url=unit.url) as client:
        token = csrf_of(client.get("/agent").text)
        wrong = client.post(
            "/agent/login", data={"csrf": token, "agent_id": AGENT, "credential": "000000"}
        )
        assert wrong.status_code == 401 and "Wrong agent id or PIN" in wrong.text
        for number in range(19):  # spraying other ids: each id stays below its lockout
            client.post(
                "/agent/login",
                data={"csrf": token, "agent_id": f"X{number}", "credential": "000000"},
            )
        blocked = client.post(
            "/agent/login", data={"csrf": token, "agent_id": AGENT, "credential": PIN}
        )
        assert blocked.status_code == 429 and "wait a minute" in blocked.text
        assert client.get("/agent/events").status_code == 401


def test_streams_carry_only_their_fields(make_unit) -> None:
    unit = make_unit(overview_origins=("https://gate-b43.example:8443",))
    with httpx.Client(base_url=unit.url) as client:
        answer, display = first_event(client, "/events/display")
        assert set(display) == set(DISPLAY_FIELDS)
        assert answer.headers["content-type"].startswith("text/event-stream")
        answer, summary = first_event(
            client, "/events/summary", headers={"Origin": "https://gate-b43.example:8443"}
        )
        assert set(summary) == set(SUMMARY_FIELDS)
        assert answer.headers["access-control-allow-origin"] == "https://gate-b43.example:8443"
        # a page that may not read the summary may not hold its stream open either
        evil = client.get("/events/summary", headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
        same = {"Origin": unit.url}  # the unit's own overview
        assert first_event(client, "/events/summary", headers=same)[0].status_code == 200


def test_metrics_scrape(unit) -> None:
    answer = httpx.get(unit.url + "/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    for name in (
        "gate_travellers",
        "gate_capture_seconds",
        "gate_verify_seconds",
        "gate_frames_dropped",
        "gate_link_up",
        "gate_matcher_breaker_state",
        "gate_ledger_records",
        "gate_ledger_durable",
        "gate_last_verify_success_timestamp_seconds",
        "gate_state",
        "process_start_time_seconds",
    ):
        assert name in families, name


def test_page_text_is_escaped(make_unit) -> None:
    unit = make_unit(gate_name='<img src=x onerror="alert(1)">')
    page = httpx.get(unit.url + "/").text
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_https_with_the_units_certificate(make_unit, tls) -> None:
    unit = make_unit(certificate=tls.cert(), key=tls.key(), bind="127.0.0.1")
    assert unit.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(tls.ca))
    with httpx.Client(base_url=unit.url, verify=context) as client:
        answer = client.get("/agent")
        assert answer.status_code == 200
        assert "__Host-gate_signin=" in answer.headers["set-cookie"]
        assert "Secure" in answer.headers["set-cookie"]
        assert "max-age" in answer.headers["strict-transport-security"]
        answer = client.post(
            "/agent/login",
            data={"csrf": csrf_of(answer.text), "agent_id": AGENT, "credential": PIN},
        )
        session = next(c for c in answer.headers.get_list("set-cookie") if "gate_sid=" in c)
        assert session.startswith("__Host-gate_sid=") and "Secure" in session
    with pytest.raises(httpx.ConnectError):
        httpx.get(unit.url + "/")  # not trusted without the CA


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("client_only", "client_only", "not for TLS servers"),
        ("expired", "expired", "not now"),
        ("server", "expired", "does not belong"),
    ],
)
def test_unusable_certificates_are_refused_at_start(unit, tls, cert, key, message) -> None:
    settings = ScreenSettings(port=0, certificate=tls.cert(cert), key=tls.key(key))
    with pytest.raises(ScreensError, match=message):
        ScreenServer(lambda *_: None, settings, unit.board)


def test_plain_http_beyond_loopback_is_refused(unit) -> None:
    with pytest.raises(ScreensError, match="HTTPS only"):
        ScreenServer(lambda *_: None, ScreenSettings(bind="0.0.0.0", port=0), unit.board)


def _config(tmp_path: Path, screens: str) -> Path:
    text = (REPO / "systemd" / "gate-appliance.toml.example").read_text()
    head = text[: text.index("[screens]")]
    write_private(tmp_path / "relay.key", ("00" * 32).encode())
    path = tmp_path / "gate.toml"
    path.write_text(head + "[screens]\n" + screens)
    return path


@pytest.mark.parametrize(
    ("screens", "message"),
    [
        ('bind = "0.0.0.0"\n', "HTTPS only"),
        ('bind = "gate.example"\n', "must be an IP address"),
        ('certificate = "a.pem"\n', "go together"),
        ('peers = ["http://10.1.2.3:8080"]\n', "https beyond loopback"),
        ('peers = ["https://gate-b43/agent"]\n', "no path"),
        ('server_names = ["bad name"]\n', "not a host name"),
        ("port = 70000\n", "out of range"),
        ('metrics = "yes"\n', "true or false"),
        ('colour = "red"\n', "unknown key 'colour' in \\[screens\\]"),
    ],
)
def test_screens_config_errors_name_the_key(tmp_path, screens: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_config(tmp_path, screens))


def test_screens_config_defaults(tmp_path) -> None:
    config = load_config(_config(tmp_path, ""))
    assert config.screens == ScreenSettings()
    assert config.screens.bind == "127.0.0.1" and not config.screens.https
    example = load_config(_config(tmp_path, 'peers = ["https://gate-b43.example:8443"]\n'))
    assert example.screens.peers == ("https://gate-b43.example:8443",)
