"""The screens' routes: traveller display, privacy notice, agent station, overview, metrics.

=====================  ======================================================================
``/``                  traveller display (kiosk): instruction, positioning cue, privacy line
``/privacy``           the privacy notice: what is captured, where it goes, retention, opt-out
``/events/display``    its live stream: instruction keys and face coordinates, nothing else
``/agent``             sign-in (agent id + PIN, or a signed badge), then this gate's station
``/agent/login``       POST: sign in (CSRF-checked like every POST)
``/agent/action``      POST: release or cancel with a reason code, by the signed-in agent
``/agent/logout``      POST: sign out
``/agent/events``      the station's live stream (signed-in agents only)
``/overview``          several gates at once, read from each unit's ``/events/summary``
``/events/summary``    a gate's summary stream: no traveller's data; open to this origin and
                       to the overviews listed in ``overview_origins`` (others: 403)
``/metrics``           Prometheus (``appliance.screens.metrics``)
=====================  ======================================================================

Templates autoescape everything (explicitly: Starlette's default would not escape a
template name that does not end in ``.html``), and the pages' scripts write with
``textContent`` and ``setAttribute`` only. A bad request gets one short plain-text
answer naming what is wrong; nothing a browser sends can raise past a handler. Live
streams take their places from ``limits.StreamSlots``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs

import jinja2
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from appliance.gate.agents import (
    Agent,
    AgentAuthenticator,
    AgentCommand,
    CancelReason,
    RefusalReason,
    ReleaseReason,
)
from appliance.gate.machine import State
from appliance.screens.board import AGENT_FIELDS, DISPLAY_FIELDS, SUMMARY_FIELDS, LaneBoard
from appliance.screens.catalog import CATALOGS, DEFAULT_LANGUAGE, pick_language
from appliance.screens.limits import StreamSlots
from appliance.screens.metrics import GateMetrics
from appliance.screens.security import (
    AgentSession,
    HeaderPolicy,
    HostCheck,
    LoginForms,
    LoginThrottle,
    SecurityHeaders,
    SessionStore,
    allowed_hosts,
    refusal,
)
from appliance.screens.settings import ScreenSettings, is_kiosk
from appliance.screens.stream import event_stream

log = logging.getLogger("gate.screens")

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 4096
REFRESH_S = 1.0  # the board re-reads the traveller card and the health alerts this often
_WITH_AGENT = frozenset({State.REFER_TO_AGENT, State.MANUAL_CHECK})
_CANCELLABLE = frozenset(State) - {State.READY, State.OUT_OF_SERVICE}
RELEASE_REASONS = tuple(r.value for r in ReleaseReason)
CANCEL_REASONS = tuple(r.value for r in CancelReason)


class AgentDesk(Protocol):
    """What the station's actions go to (``appliance.gate.workflow.GateWorkflow``)."""

    def agent_command(
        self, agent_id: str, command: AgentCommand, reason: ReleaseReason | CancelReason
    ) -> bool: ...


@dataclass
class ScreenParts:
    board: LaneBoard
    authenticator: AgentAuthenticator
    desk: AgentDesk | None
    metrics: GateMetrics
    settings: ScreenSettings


class _Raw:
    """A raw ASGI app as a Route endpoint (a plain function would be taken for a handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _BadForm(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_form(request: Request) -> dict[str, str]:
    """A small url-encoded form; ``_BadForm`` says what is wrong with it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise _BadForm(415, "send the form url-encoded")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise _BadForm(413, f"form larger than {MAX_FORM_BYTES} bytes")
    except ClientDisconnect as exc:  # gone, or cut off by the request deadline
        raise _BadForm(400, "the form did not arrive") from exc
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=16, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadForm(400, "form is not valid url-encoded UTF-8") from exc
    return {k: v[0] for k, v in fields.items()}


def build_app(parts: ScreenParts) -> ASGIApp:
    """The screens' ASGI application, wrapped in its host check and security headers."""
    board, metrics, settings = parts.board, parts.metrics, parts.settings
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates = Jinja2Templates(env=env)
    sessions = SessionStore()
    forms = LoginForms()
    # the unit's own screen and the network are throttled apart: a flood of wrong PINs
    # from the network cannot lock the local station out (see LoginThrottle)
    throttles = {True: LoginThrottle(), False: LoginThrottle()}
    prefix = "__Host-" if settings.https else ""
    cookie, form_cookie = f"{prefix}gate_sid", f"{prefix}gate_signin"
    slots = StreamSlots(settings.max_streams)

    def refuse(reason: str, status: int = 403, text: str = "") -> Response:
        metrics.refused_requests.labels(reason).inc()
        return PlainTextResponse(f"{status} refused: {text or reason}\n", status_code=status)

    def language(request: Request, remember: bool) -> str:
        asked = request.query_params.get("lang")
        if asked in CATALOGS:
            return asked
        return pick_language(request.cookies.get("lang") if remember else None)

    def render(
        request: Request, name: str, context: dict, *, status: int = 200, remember: bool = True
    ) -> Response:
        lang = language(request, remember)
        catalog = CATALOGS[lang]
        values = {
            "us_hours": settings.retention_us_hours,
            "other_days": settings.retention_other_days,
        }
        response = templates.TemplateResponse(
            request,
            name,
            {
                "t": catalog,
                "lang": lang,
                "langs": {code: c["lang_name"] for code, c in CATALOGS.items()},
                "notice": {k: catalog[k].format(**values) for k in _NOTICE_KEYS},
                "identity": board.identity,
                "release_reasons": RELEASE_REASONS,
                "cancel_reasons": CANCEL_REASONS,
                **context,
            },
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )
        if remember and request.query_params.get("lang") in CATALOGS:
            response.set_cookie("lang", lang, samesite="strict", secure=settings.https, path="/")
        return response

    def set_cookie(response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name, value, httponly=True, samesite="strict", secure=settings.https, path="/"
        )

    def client_of(request: Request) -> str:
        return request.client.host if request.client else ""

    def origin_of(request: Request) -> str:
        return f"{settings.scheme}://{request.headers.get('host', '')}"

    def session_of(request: Request) -> tuple[str | None, AgentSession | None]:
        sid = request.cookies.get(cookie)
        return sid, sessions.get(sid)

    def stream(
        request: Request,
        page: str,
        fields: tuple[str, ...],
        pool: str | None,
        headers: dict | None = None,
    ) -> Response:
        slot = slots.take(client_of(request), pool)
        if isinstance(slot, str):
            if slot == "too_many_streams_client":
                return refuse(slot, 429, "too many live streams open from this address")
            return refuse(slot, 503, "too many live streams open")
        gauge = metrics.screen_clients.labels(page)
        gauge.inc()

        def closed() -> None:
            slot()
            gauge.dec()

        return event_stream(board, fields, on_close=closed, headers=headers)

    # --- traveller display ------------------------------------------------------------

    async def display(request: Request) -> Response:
        catalogs = {code: {k: c[k] for k in _DISPLAY_KEYS} for code, c in CATALOGS.items()}
        return render(
            request,
            "display.html",
            {"catalogs": catalogs, "default_lang": DEFAULT_LANGUAGE},
            remember=False,
        )

    async def privacy(request: Request) -> Response:
        return render(request, "privacy.html", {}, remember=False)

    async def display_events(request: Request) -> Response:
        pool = "kiosk" if is_kiosk(client_of(request)) else None
        return stream(request, "display", DISPLAY_FIELDS, pool)

    # --- agent station ----------------------------------------------------------------

    async def agent(request: Request) -> Response:
        _, session = session_of(request)
        if session is None:  # the sign-in form: a cookie nonce, nothing kept here
            nonce = forms.nonce(request.cookies.get(form_cookie))
            response = render(request, "login.html", {"csrf": forms.token(nonce), "error": None})
            set_cookie(response, form_cookie, nonce)
            return response
        result, session.notice = session.notice, ""
        return render(
            request,
            "agent.html",
            {"csrf": session.csrf, "agent": session.agent, "result": result},
        )

    async def login(request: Request) -> Response:
        sid = request.cookies.get(cookie)
        csrf = forms.token(request.cookies.get(form_cookie))
        try:
            form = await _read_form(request)
        except _BadForm as exc:
            return refuse("bad_form", exc.status, str(exc))
        reason = refusal(dict(request.headers), origin_of(request), csrf, form.get("csrf"))
        if reason:
            return refuse(reason)
        throttle = throttles[is_kiosk(client_of(request))]
        reservation = throttle.reserve()  # counted before the check: no concurrent slip-in
        if reservation is None:
            metrics.login_failures.labels("throttled").inc()
            return render(
                request, "login.html", {"csrf": csrf, "error": "refused_throttled"}, status=429
            )
        agent_id = form.get("agent_id", "").strip()
        credential = form.get("credential", "").strip()
        # scrypt takes ~50 ms: off the event loop, or every live stream would stall
        answer = await run_in_threadpool(parts.authenticator.verify, agent_id, credential)
        if not isinstance(answer, Agent):
            metrics.login_failures.labels(answer.reason.value).inc()
            log.warning("agent sign-in refused: %s", answer.reason.value)
            status = 429 if answer.reason is RefusalReason.LOCKED else 401
            error = f"refused_{answer.reason.value}"
            return render(request, "login.html", {"csrf": csrf, "error": error}, status=status)
        throttle.succeeded(reservation)
        sessions.drop(sid)  # a new id once signed in: no session fixation
        new_sid, _ = sessions.new(answer)
        log.info("agent %s signed in at the agent station (%s)", answer.agent_id, answer.method)
        response = RedirectResponse("/agent", status_code=303)
        set_cookie(response, cookie, new_sid)
        response.delete_cookie(form_cookie, path="/", secure=settings.https, httponly=True)
        return response

    async def checked_post(request: Request):
        """``(sid, session, form)`` of a POST that passes every CSRF layer, else the refusal."""
        sid, session = session_of(request)
        try:
            form = await _read_form(request)
        except _BadForm as exc:
            return refuse("bad_form", exc.status, str(exc))
        csrf = session.csrf if session else None
        reason = refusal(dict(request.headers), origin_of(request), csrf, form.get("csrf"))
        if reason:
            return refuse(reason)
        return sid, session, form

    async def logout(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        sid, session, _ = checked
        if session is not None:
            log.info("agent %s signed out", session.agent.agent_id)
        sessions.drop(sid)
        response = RedirectResponse("/agent", status_code=303)
        response.delete_cookie(cookie, path="/", secure=settings.https, httponly=True)
        return response

    async def action(request: Request) -> Response:
        checked = await checked_post(request)
        if isinstance(checked, Response):
            return checked
        _, session, form = checked
        assert session is not None  # the CSRF check needs a session's token
        if parts.desk is None:
            return refuse("no_desk", 409, "this gate takes no actions from the station")
        command_text, reason_text = form.get("action", ""), form.get("reason", "")
        try:
            command = AgentCommand(command_text.upper())
            code = (ReleaseReason if command is AgentCommand.RELEASE else CancelReason)(reason_text)
        except ValueError:
            return refuse("bad_action", 400, "unknown action or reason code")
        allowed = _WITH_AGENT if command is AgentCommand.RELEASE else _CANCELLABLE
        agent_id = session.agent.agent_id
        done = board.phase in allowed and await run_in_threadpool(
            parts.desk.agent_command, agent_id, command, code
        )
        if not done:
            session.notice = "action_refused"
            log.info("agent %s: %s refused in %s", agent_id, command.value, board.phase.value)
            return RedirectResponse("/agent", status_code=303)
        metrics.agent_actions.labels(command.value.lower()).inc()
        board.agent_acted(agent_id, command.value.lower(), code.value)
        log.info("agent %s: %s (%s) at the agent station", agent_id, command.value, code.value)
        session.notice = "action_done"
        return RedirectResponse("/agent", status_code=303)

    async def agent_events(request: Request) -> Response:
        _, session = session_of(request)
        if session is None:
            return refuse("not_signed_in", 401, "sign in first")
        return stream(request, "agent", AGENT_FIELDS, "agents")

    # --- the fleet ----------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        _, session = session_of(request)
        if session is None:
            return RedirectResponse("/agent", status_code=303)
        catalog = CATALOGS[language(request, True)]
        return render(
            request,
            "overview.html",
            {"units": ["", *settings.peers], "catalog": catalog, "agent": session.agent},
        )

    async def summary_events(request: Request) -> Response:
        # CORS only stops another page *reading* a stream, not holding it open: a page
        # that may not read it gets no stream at all
        origin = request.headers.get("origin")
        headers = {"Vary": "Origin"}
        if origin is not None and origin != origin_of(request):
            if origin not in settings.overview_origins:
                return refuse("origin", 403, "this page may not read this gate's summary")
            headers["Access-Control-Allow-Origin"] = origin
        _, session = session_of(request)
        pool = "agents" if session is not None else None
        return stream(request, "summary", SUMMARY_FIELDS, pool, headers)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        board.attach(asyncio.get_running_loop())
        ticker = asyncio.create_task(_refresh(board))
        try:
            yield
        finally:
            ticker.cancel()

    routes = [
        Route("/", display),
        Route("/privacy", privacy),
        Route("/events/display", display_events),
        Route("/agent", agent),
        Route("/agent/login", login, methods=["POST"]),
        Route("/agent/logout", logout, methods=["POST"]),
        Route("/agent/action", action, methods=["POST"]),
        Route("/agent/events", agent_events),
        Route("/overview", overview),
        Route("/events/summary", summary_events),
        Route("/healthz", healthz),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    if settings.metrics:
        # Route, not Mount: a Mount answers /metrics with a redirect to /metrics/.
        routes.append(Route("/metrics", _Raw(make_asgi_app(registry=metrics.registry))))
    app = Starlette(routes=routes, lifespan=lifespan)
    connect = tuple(_origin(url) for url in settings.peers)
    secured = SecurityHeaders(app, HeaderPolicy(connect=connect, https=settings.https))
    hosts = allowed_hosts(settings.bind, settings.server_names)
    return HostCheck(secured, hosts, metrics.refused_requests.labels("host").inc)


async def _refresh(board: LaneBoard) -> None:
    while True:
        await asyncio.sleep(REFRESH_S)
        try:
            await asyncio.to_thread(board.refresh)
        except Exception:
            log.exception("screens: refreshing the lane board failed")


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


_NOTICE_KEYS = (
    "privacy_short",
    "privacy_what",
    "privacy_where",
    "privacy_purge",
    "privacy_optout",
)
# What the display's script may switch between languages without a reload.
_DISPLAY_KEYS = (
    "lang_name",
    "display_title",
    "gate",
    "flight",
    "seat",
    "cue_legend",
    "no_camera_image",
    "reconnecting",
    "privacy_link",
    "privacy_short",
    "scan_pass",
    "look_at_camera",
    "come_closer",
    "look_straight",
    "step_to_centre",
    "one_at_a_time",
    "hold_still",
    "proceed",
    "see_agent",
    "manual_check",
    "lane_closed",
)

__all__ = [
    "CANCEL_REASONS",
    "HERE",
    "MAX_FORM_BYTES",
    "REFRESH_S",
    "RELEASE_REASONS",
    "AgentDesk",
    "ScreenParts",
    "build_app",
]
