"""Screenshots of the screens, taken from a running ``gatectl demo --screens``.

Starts the demo (it prints the pages' URLs and a demo agent's PIN), follows the traveller
display and the agent station in headless Chromium (Debian's, through Playwright; its own
browser download is never used) and saves PNGs into ``docs/screens/``:

* ``display-capturing.png``: a traveller being positioned (the outline, no camera image);
* ``display-proceed.png``: a match, "please proceed";
* ``display-see-agent.png``: a traveller not on the flight, "please see the agent";
* ``display-manual-check.png``: after the opt-out button;
* ``agent-manual-check.png``: the agent station during that manual check (then the script
  releases the gate with a reason, as an agent would);
* ``privacy-notice.png`` and ``overview.png``.

Run: ``.venv/bin/python scripts/screenshots.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/lib/chromium/chromium"
ARGS = ["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
VIEWPORT = {"width": 1280, "height": 800}


def _read_until(demo: subprocess.Popen, pattern: str) -> re.Match:
    assert demo.stdout is not None
    for line in demo.stdout:
        print(line, end="")
        found = re.search(pattern, line)
        if found:
            return found
    sys.exit(f"the demo ended before printing {pattern!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screens")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    demo = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "gatectl"),
            "demo",
            "--screens",
            "--hold",
            "4",
            "--fps",
            "10",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        url = _read_until(demo, r"traveller display: (http://\S+)/ ").group(1)
        agent, pin = _read_until(demo, r"agent (\S+), PIN (\d+)").groups()
        _read_until(demo, r"first traveller in")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # one context (window) each: neither page is a background tab
            display = browser.new_context(viewport=VIEWPORT, locale="en-GB").new_page()
            display.goto(url + "/")
            # The queue: a match, an empty lane, a stranger, an opt-out, a match. (The pages'
            # policy forbids eval: wait with locators, never with wait_for_function.)
            instruction = display.locator("#instruction-text")
            expect(instruction).to_have_attribute("data-key", "proceed", timeout=60_000)
            display.screenshot(path=args.out / "display-proceed.png")
            expect(instruction).to_have_attribute("data-key", "come_closer", timeout=60_000)
            display.screenshot(path=args.out / "display-capturing.png")
            expect(instruction).to_have_attribute("data-key", "see_agent", timeout=60_000)
            display.screenshot(path=args.out / "display-see-agent.png")
            expect(instruction).to_have_attribute("data-key", "manual_check", timeout=60_000)
            display.screenshot(path=args.out / "display-manual-check.png")
            station = browser.new_context(viewport=VIEWPORT, locale="en-GB").new_page()
            station.goto(url + "/agent")
            station.fill("#agent_id", agent)
            station.fill("#credential", pin)
            station.click("#sign-in")
            expect(station.locator("#phase")).to_have_text("Manual document check")
            station.screenshot(path=args.out / "agent-manual-check.png")
            station.select_option("#release-reason", "documents_checked")
            station.click("#release")
            station.goto(url + "/overview")
            expect(station.locator(".unit[data-state=live]")).to_have_count(1)
            station.screenshot(path=args.out / "overview.png")
            display.goto(url + "/privacy")
            display.screenshot(path=args.out / "privacy-notice.png")
            browser.close()
        demo.wait(timeout=120)
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.wait(timeout=30)
    for png in sorted(args.out.glob("*.png")):
        print(f"{png.relative_to(REPO)}: {png.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
