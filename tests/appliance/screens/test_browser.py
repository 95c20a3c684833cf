"""The screens in a real headless browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

import base64
import hashlib
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Error as BrowserError
from playwright.sync_api import expect

from appliance.gate.machine import Event, State
from appliance.paths import tools_dir
from firmware_bridge.host import OptOutPressed
from testbed.runs import wait_for
from tests.appliance.screens.conftest import AGENT, PIN
from tests.browser import VIEWPORT, another_browser

pytestmark = pytest.mark.browser
AXE = tools_dir() / "axe-core" / "axe.min.js"


def sign_in(page, unit, agent: str = AGENT, credential: str = PIN):
    page.goto(unit.url + "/agent")
    page.fill("#agent_id", agent)
    page.fill("#credential", credential)
    with page.expect_response(lambda r: r.url.endswith("/agent/login")) as answer:
        page.click("#sign-in")
    return answer.value


def test_display_follows_the_lane_live(page, unit) -> None:
    page.goto(unit.url + "/")
    instruction = page.locator("#instruction-text")
    expect(instruction).to_have_text("Please scan your boarding pass")
    expect(page.locator("#cue")).to_be_hidden()
    unit.gate.fire(Event.PASS_SCANNED, "pass ok")
    expect(instruction).to_have_text("Look at the camera")
    unit.progress("inter_eye_distance", box=(0.46, 0.35, 0.54, 0.49))
    expect(instruction).to_have_text("Come closer")
    expect(page.locator("#cue")).to_be_visible()
    face = page.locator("#face")
    expect(face).to_have_attribute("visibility", "visible")
    # the box in the capture zone's coordinates (the central 720x720 square of the frame)
    assert float(face.get_attribute("x")) == pytest.approx((0.46 * 1280 - 280) / 720 * 1000, abs=1)
    assert float(face.get_attribute("width")) == pytest.approx(0.08 * 1280 / 720 * 1000, abs=1)
    unit.progress("yaw")
    expect(instruction).to_have_text("Look straight ahead")
    unit.progress(None)
    unit.gate.fire(Event.FRAME_SENT)
    expect(instruction).to_have_text("Hold still")
    unit.gate.grant("match")
    expect(instruction).to_have_text("Please proceed")
    expect(page.locator("body")).to_have_attribute("data-mood", "go")
    expect(page.locator("#symbol")).to_have_text("✔")  # not colour alone
    expect(page.locator("#cue")).to_be_hidden()


def test_language_switch_and_back_for_the_next_traveller(page, unit) -> None:
    page.goto(unit.url + "/")
    page.get_by_role("link", name="Français").click()
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    instruction = page.locator("#instruction-text")
    expect(instruction).to_have_text("Veuillez scanner votre carte d’embarquement")
    unit.gate.fire(Event.PASS_SCANNED)
    expect(instruction).to_have_text("Regardez la caméra")
    expect(page.locator("#privacy-link")).to_have_attribute("href", "/privacy?lang=fr")
    unit.gate.refer("no usable face", Event.NO_USABLE_FACE)
    expect(instruction).to_have_text("Veuillez vous adresser à l’agent")
    unit.gate.agent_cancel()  # the lane is ready again: the next traveller gets English
    expect(instruction).to_have_text("Please scan your boarding pass")
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_privacy_notice_is_one_tap_away(page, unit) -> None:
    page.goto(unit.url + "/")
    page.click("#privacy-link")
    expect(page.locator("h1")).to_have_text("Your photo and your privacy")
    expect(page.locator("#retention")).to_contain_text("at most 12 hours")
    expect(page.locator("#retention")).to_contain_text("up to 14 days")
    expect(page.locator("#opt-out")).to_contain_text("opt-out button")
    page.get_by_role("link", name="Français").click()
    expect(page.locator("#retention")).to_contain_text("12 heures")
    page.click("#back")
    expect(page.locator("#instruction-text")).to_have_text(
        "Veuillez scanner votre carte d’embarquement"
    )


def test_wrong_pin_is_refused_and_the_agent_releases_after_a_manual_check(page, unit) -> None:
    answer = sign_in(page, unit, credential="000000")
    assert answer.status == 401
    expect(page.locator("#error")).to_have_text("⚠ Wrong agent id or PIN")
    expect(page.locator("#release")).to_have_count(0)
    assert sign_in(page, unit).status == 303
    assert "gate_sid" not in page.evaluate("document.cookie")  # HttpOnly: not for scripts
    expect(page.locator("#phase")).to_have_text("Ready")
    expect(page.locator("#release")).to_be_disabled()
    unit.link.emit(OptOutPressed())
    expect(page.locator("#phase")).to_have_text("Manual document check")
    expect(page.locator("#referral")).to_have_text("Traveller opted out: check documents by hand")
    expect(page.locator("#count-opt_outs")).to_have_text("1")
    expect(page.locator("#release")).to_be_enabled()
    page.select_option("#release-reason", "documents_checked")
    page.click("#release")
    expect(page.locator("#result")).to_have_text("Done")
    expect(page.locator("#phase")).to_have_text("Released by agent")
    expect(page.locator("#last-action")).to_have_text(
        "A123: Release the gate (Documents checked by hand)"
    )
    expect(page.locator("#count-manual_checks")).to_have_text("1")
    assert unit.desk.calls[-1][0] == AGENT and unit.link.pulses


@pytest.mark.parametrize(
    "hostile_host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"]
)
def test_a_forged_request_from_another_page_is_refused(
    page, unit, hostile_site, hostile_host
) -> None:
    unit.link.emit(OptOutPressed())
    assert sign_in(page, unit).status == 303  # the victim agent is signed in
    port = hostile_site(
        "/win",
        f"""<!doctype html><body><form id=f method=post action="{unit.url}/agent/action">
        <input name=action value=release><input name=reason value=documents_checked>
        <input name=csrf value=guessed></form>
        <script>document.getElementById('f').submit()</script></body>""",
    )
    hostile = page.context.new_page()
    with hostile.expect_response(lambda r: r.url.endswith("/agent/action")) as answer:
        hostile.goto(f"http://{hostile_host}:{port}/win")
    assert answer.value.status == 403
    sent = answer.value.request.all_headers()
    # 127.0.0.1 on another port is the *same site*: the Strict cookie goes along
    assert ("gate_sid=" in sent.get("cookie", "")) == (hostile_host == "127.0.0.1")
    assert unit.desk.calls == [] and unit.gate.phase is State.MANUAL_CHECK
    assert unit.link.pulses == []


def test_another_page_cannot_hold_the_summary_streams_open(page, unit, hostile_site) -> None:
    """CORS stops another page reading a stream, not opening it: such a page gets none."""
    port = hostile_site(
        "/hold",
        f"""<!doctype html><body><script>
        for (let i = 0; i < 12; i++) new EventSource("{unit.url}/events/summary");
        </script></body>""",
    )
    sample = unit.metrics.registry.get_sample_value
    page.goto(f"http://localhost:{port}/hold")
    # every try refused for its Origin, none held open (CORS alone would let all twelve in)
    refused = {"reason": "origin"}
    assert wait_for(lambda: sample("gate_web_requests_refused_total", refused) == 12)
    assert not sample("gate_screen_clients", {"page": "summary"})  # never one open
    page.goto(unit.url + "/")  # while the traveller display streams as ever
    expect(page.locator("#instruction-text")).to_have_text("Please scan your boarding pass")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_overview_reads_several_units(page, make_unit) -> None:
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    b43 = make_unit(gate_name="B43", overview_origins=(origin,))
    b44 = make_unit(gate_name="B44")  # does not let this overview read it
    station = make_unit(gate_name="B42", port=port, peers=(b43.url, b44.url))
    sign_in(page, station)
    page.goto(station.url + "/overview")
    cards = page.locator(".unit")
    expect(cards).to_have_count(3)
    expect(cards.nth(0)).to_have_attribute("data-state", "live")
    expect(cards.nth(1).locator("h2")).to_contain_text("B43")
    expect(cards.nth(1).locator(".phase .value")).to_have_text("Ready")
    b43.link.emit(OptOutPressed())
    expect(cards.nth(1).locator(".phase .value")).to_have_text("Manual document check")
    expect(cards.nth(1).locator(".counters .value")).to_contain_text("Opt-outs 1")
    expect(cards.nth(2)).to_have_attribute("data-state", "unreachable")
    expect(cards.nth(2).locator(".phase .value")).to_have_text("Not reachable")


def _axe(page, rules: list[str]) -> list[dict]:
    # Evaluated over the DevTools protocol, which the page's CSP does not govern.
    page.evaluate(AXE.read_text() + "\n;0")
    found = page.evaluate(
        "(rules) => axe.run(document, {runOnly: {type: 'rule', values: rules},"
        " resultTypes: ['violations']})",
        rules,
    )
    return found["violations"]


RULES = [
    "color-contrast",
    "html-has-lang",
    "document-title",
    "label",
    "button-name",
    "link-name",
    "select-name",
    "aria-allowed-attr",
    "svg-img-alt",
]


@pytest.mark.skipif(not AXE.exists(), reason="axe-core missing: run `make setup`")
def test_contrast_and_labels_meet_wcag_aa(page, unit) -> None:
    def check(where: str) -> None:
        problems = _axe(page, RULES)
        assert problems == [], (
            where,
            [(p["id"], [n["target"] for n in p["nodes"]]) for p in problems],
        )

    page.goto(unit.url + "/")
    check("display, ready")
    unit.gate.fire(Event.PASS_SCANNED)
    unit.progress("inter_eye_distance")
    expect(page.locator("#cue")).to_be_visible()
    check("display, capturing")
    unit.gate.refer("no usable face", Event.NO_USABLE_FACE)
    expect(page.locator("body")).to_have_attribute("data-mood", "stop")
    check("display, see the agent")
    unit.gate.agent_release()
    expect(page.locator("body")).to_have_attribute("data-mood", "go")
    check("display, proceed")
    page.goto(unit.url + "/privacy?lang=fr")
    check("privacy notice")
    sign_in(page, unit, credential="000000")
    check("sign-in with an error")
    sign_in(page, unit)
    expect(page.locator("#phase")).not_to_have_text("–")
    check("agent station")
    page.goto(unit.url + "/overview")
    check("overview")
    # the rule really runs: grey on navy is flagged
    page.evaluate("document.querySelector('h1').style.color = '#555555'")
    assert [p["id"] for p in _axe(page, ["color-contrast"])] == ["color-contrast"]


def test_the_page_script_policy_blocks_injected_scripts(page, unit) -> None:
    page.goto(unit.url + "/")
    with pytest.raises(BrowserError, match=r"Content Security Policy|violates"):
        page.add_script_tag(content="window.injected = 1")
    assert page.evaluate("window.injected") is None


def _spki_pin(certificate: Path) -> str:
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_https_in_the_browser(browser, page, make_unit, tls) -> None:
    unit = make_unit(certificate=tls.cert(), key=tls.key())
    with pytest.raises(BrowserError, match="ERR_CERT_AUTHORITY_INVALID"):
        page.goto(unit.url + "/")
    trusting = another_browser(
        browser, [f"--ignore-certificate-errors-spki-list={_spki_pin(tls.cert())}"]
    )
    try:
        pinned = trusting.new_context(viewport=VIEWPORT).new_page()
        pinned.goto(unit.url + "/")
        expect(pinned.locator("#instruction-text")).to_have_text("Please scan your boarding pass")
        unit.gate.fire(Event.PASS_SCANNED)
        expect(pinned.locator("#instruction-text")).to_have_text(
            "Look at the camera"
        )  # SSE over TLS
        assert sign_in(pinned, unit).status == 303
        expect(pinned.locator("#phase")).to_have_text("Capturing")
        cookie = next(c for c in pinned.context.cookies() if c["name"] == "__Host-gate_sid")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    finally:
        trusting.close()


def test_stopping_ends_open_streams(browser, unit) -> None:
    pages = [browser.new_page() for _ in range(2)]
    for each in pages:
        each.goto(unit.url + "/")
        expect(each.locator("#instruction-text")).to_have_text("Please scan your boarding pass")
    unit.server.close()
    assert not unit.server._thread.is_alive()
    for each in pages:
        expect(each.locator("#reconnecting")).to_be_visible()
        each.close()
