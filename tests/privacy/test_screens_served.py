"""Proof: nothing the screens serve carries pixels (invariant 9) or a traveller's identity
where it must not.

One traveller goes through the running service (real matcher, real camera path on a
replay, the firmware simulator) while the test follows every live stream the screens
offer (the display's, the overview summary's, the signed-in station's) and fetches
every page, script, stylesheet and ``/metrics``. Everything received is checked: no
JPEG/PNG signature, raw or base64, no high-entropy run such as a sealed payload would
leave (``testbed.write_audit.contains_image_data``, the check used on files), no long
base64 or escaped bytes (``appliance.service.log_filter``, the check used on logs); each
stream's events are small JSON of numbers, booleans and short words; the display and the
summary never hold the name on the pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path

import httpx

from appliance.gate.agents import set_pin
from appliance.service.config import load_config
from appliance.service.log_filter import looks_like_image_text
from appliance.service.runner import run_service
from appliance.service.status import read_status
from firmware_bridge.simulator import Simulator
from testbed.runs import wait_for
from testbed.write_audit import contains_image_data
from tests.support import unit_config

TIMEOUT = 90.0
MAX_WORD = 80  # the longest string a stream may carry (flight names, reason keys)


class Follower(threading.Thread):
    """Reads one SSE stream to the end, keeping every byte received."""

    def __init__(self, client: httpx.Client, path: str) -> None:
        super().__init__(daemon=True)
        self.client, self.path = client, path
        self.raw = bytearray()
        self.opened = threading.Event()

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.path, timeout=TIMEOUT) as response:
                self.opened.set()
                for chunk in response.iter_raw():
                    self.raw += chunk
        except httpx.HTTPError:
            pass  # the server went away at the end of the test

    def events(self) -> list[dict]:
        return [
            json.loads(line[5:])
            for line in self.raw.decode("ascii").splitlines()
            if line.startswith("data:")
        ]


def _plain_values(value, path: str = "") -> list[str]:
    """Where ``value`` holds anything but numbers, booleans, None and short words."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _plain_values(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for n, v in enumerate(value) for p in _plain_values(v, f"{path}[{n}]")]
    if value is None or isinstance(value, bool | int | float):
        return []
    if isinstance(value, str) and len(value) <= MAX_WORD and value.isprintable():
        return []
    return [path]


def test_nothing_served_carries_pixels(tmp_path: Path, matcher, demo_photos) -> None:
    key = os.urandom(32)
    simulator = Simulator(key).start()
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(demo_photos / "obama2.jpg", frames)
    set_pin(tmp_path / "agents.json", "A123", "482913")
    config = load_config(
        unit_config(
            tmp_path,
            matcher_target=matcher.target,
            pki_dir=matcher.pki.root,
            serial_port=simulator.port,
            relay_key=key,
            camera_source=f"replay:{frames}",
            camera={"repeat": 30},
            scanner={"port": "stdin"},
            screens={"port": 0},
            agents={"file": "agents.json"},
        )
    )
    read_fd, write_fd = os.pipe()  # a keyboard-wedge scanner nobody types into
    stop = threading.Event()
    stdin, sys.stdin = sys.stdin, os.fdopen(read_fd, "r")
    service = threading.Thread(target=run_service, args=(config, stop), daemon=True)
    followers: list[Follower] = []
    served: dict[str, bytes] = {}
    try:
        service.start()

        def status() -> dict:
            return read_status(config.status_path) if config.status_path.exists() else {}

        assert wait_for(lambda: bool(status().get("screens")), TIMEOUT)
        url = status()["screens"]
        public = httpx.Client(base_url=url)
        station = httpx.Client(base_url=url)
        token = re.search(r'name="csrf" value="([^"]+)"', station.get("/agent").text).group(1)
        station.post(
            "/agent/login", data={"csrf": token, "agent_id": "A123", "credential": "482913"}
        )
        for client, path in (
            (public, "/events/display"),
            (public, "/events/summary"),
            (station, "/agent/events"),
        ):
            follower = Follower(client, path)
            follower.start()
            followers.append(follower)
            assert follower.opened.wait(10)
        assert wait_for(lambda: len(simulator.relay_pulses) >= 1, TIMEOUT)  # the traveller matched
        simulator.set_door(True)
        simulator.set_door(False)
        assert wait_for(lambda: status().get("counters", {}).get("granted", 0) >= 1)
        for path in (
            "/",
            "/privacy",
            "/privacy?lang=fr",
            "/agent",
            "/static/display.js",
            "/static/agent.js",
            "/static/overview.js",
            "/static/screens.css",
            "/metrics",
        ):
            served[path] = public.get(path).content
        served["/agent (signed in)"] = station.get("/agent").content
        served["/overview"] = station.get("/overview").content
    finally:
        stop.set()
        service.join(TIMEOUT)
        os.close(write_fd)
        sys.stdin = stdin
        simulator.stop()
    for follower in followers:
        follower.join(10)
        served[follower.path] = bytes(follower.raw)

    display, summary, agent = (f.events() for f in followers)
    faces = [e["face"] for e in display if e["face"]]
    assert faces, "the display stream never carried the face's position"
    assert any(e["instruction"] == "proceed" for e in display)
    for name, body in served.items():
        assert body, name
        assert not contains_image_data(body), name
        assert not looks_like_image_text(body.decode("utf-8")), name
        assert b"data:image" not in body and b"<img" not in body, name
        assert b"OBAMA" not in body or name.startswith("/agent"), name
    for event in (*display, *summary, *agent):
        assert _plain_values(event) == [], event
    assert all(set(face) == {"x", "y", "w", "h", "eyes"} for face in faces)
