"""The gate's screens: the traveller display, the agent station, the fleet overview, metrics.

Served by the appliance itself from a thread of the service (``appliance.service.screen_feed``
wires them), on loopback unless configured otherwise, and over HTTPS beyond it.

* ``lane``: message keys from the gate's state (instructions, referral reasons, alerts);
* ``board``: ``LaneBoard``, the small publisher interface the gate side feeds (gate
  transitions, capture progress, agent actions) and the pages read, latest state only;
* ``pages``: the routes and their checks; ``templates/`` and ``static/`` the pages;
* ``stream``: server-sent events from the board; ``security``: sessions, CSRF, headers;
* ``limits``: the live streams' places (kiosk, agents, shared with a share per address);
  ``connections``: uvicorn's h11 protocol with a deadline per request and per-address caps;
* ``catalog``: the words, English and French; ``metrics``: Prometheus; ``server``: uvicorn
  on a thread and the HTTPS certificate checks; ``settings``: the ``[screens]`` section.

It depends on the gate and vision rooms (state, capture progress, agent credentials),
never on the service or on the capture's pixels: progress reaches it as coordinates and a
quality key (``appliance.vision.progress``), so nothing it serves can carry an image.
"""

__all__: list[str] = []
