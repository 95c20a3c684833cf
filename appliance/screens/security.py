"""Who may change anything through the screens, and what every response carries.

* Sessions exist for signed-in agents only: the cookie holds a random id (HttpOnly,
  SameSite=Strict, ``Secure`` and the ``__Host-`` prefix under HTTPS); the server keeps
  the agent and the session's CSRF token. A session ends after ``IDLE_S`` without a
  request or ``MAX_AGE_S`` in all; a login gets a new id (no fixation); sign-out drops it.
* The sign-in form keeps no server state (``LoginForms``): its cookie holds a random
  nonce and its CSRF token is an HMAC of that nonce under a key of this server. Anonymous
  visitors therefore cost nothing and cannot push a signed-in agent out of the bounded
  session store, however many forms they load.
* Every state-changing request (sign-in included) must pass, in order: Fetch Metadata
  (``Sec-Fetch-Site`` same-origin or none), ``Origin`` equal to this server's when sent
  (SameSite ignores ports: another service on the same host is "same site"), a live
  session (or sign-in cookie), and its CSRF token. The last two do not rely on the browser.
* Sign-ins are throttled for the whole gate (``LoginThrottle``) on top of the
  authenticator's per-agent lockout, so spraying many ids does not work either. An attempt
  is counted *before* its PIN is checked (and uncounted if it succeeds), so concurrent
  guesses cannot all slip in under the limit.
* Headers on every response: a strict Content-Security-Policy (scripts and styles from
  this server only, no inline script, no frames, no images from anywhere but here),
  nosniff, no framing, no referrer beyond this origin, no caching of pages and streams.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.gate.agents import Agent

IDLE_S = 15 * 60
MAX_AGE_S = 8 * 3600
MAX_SESSIONS = 256  # signed-in agents at once; beyond, expired then the oldest go
THROTTLE_FAILURES = 20  # failed sign-ins at this gate ...
THROTTLE_WINDOW_S = 60.0  # ... within this window: every sign-in waits


@dataclass
class AgentSession:
    csrf: str
    created: float
    seen: float
    agent: Agent
    notice: str = ""  # a one-time message for the next page (catalog key)


class SessionStore:
    """Server-side sessions of signed-in agents, bounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, AgentSession] = OrderedDict()

    def _expired(self, session: AgentSession, now: float) -> bool:
        return now - session.seen > IDLE_S or now - session.created > MAX_AGE_S

    def new(self, agent: Agent) -> tuple[str, AgentSession]:
        now = self._clock()
        sid = secrets.token_urlsafe(32)
        session = AgentSession(secrets.token_urlsafe(32), now, now, agent)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                for old in [k for k, v in self._sessions.items() if self._expired(v, now)]:
                    del self._sessions[old]
            self._sessions[sid] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str | None) -> AgentSession | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


class LoginForms:
    """CSRF tokens for the sign-in form without server state: HMAC(key, cookie nonce)."""

    NONCE_CHARS = 43  # secrets.token_urlsafe(32)

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)  # per server: a restart voids open forms

    def nonce(self, sent: str | None) -> str:
        """The browser's nonce if it holds a well-formed one (several tabs), else a new one."""
        if sent and len(sent) == self.NONCE_CHARS and sent.isascii():
            return sent
        return secrets.token_urlsafe(32)

    def token(self, nonce: str | None) -> str | None:
        """The form token for ``nonce``; None without one (no sign-in cookie)."""
        if not nonce:
            return None
        mac = hmac.new(self._key, b"sign-in\0" + nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class LoginThrottle:
    """Failed sign-ins of the whole gate in a sliding window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._failures and now - self._failures[0] > THROTTLE_WINDOW_S:
            self._failures.popleft()

    def reserve(self) -> float | None:
        """Count one attempt as failed before it is checked; None: too many already."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            if len(self._failures) >= THROTTLE_FAILURES:
                return None
            self._failures.append(now)
            return now

    def succeeded(self, reservation: float) -> None:
        """The attempt reserved at ``reservation`` signed in: it was no failure."""
        with self._lock, contextlib.suppress(ValueError):
            self._failures.remove(reservation)


def refusal(
    headers: dict[str, str], origin: str, expected: str | None, token: str | None
) -> str | None:
    """Why a state-changing request must be refused (a short reason word), or None.

    ``expected``: the CSRF token of the request's session or sign-in form (None: it has
    neither)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return "fetch_metadata"
    sent_origin = headers.get("origin")
    if sent_origin is not None and sent_origin != origin:
        return "origin"
    if expected is None:
        return "no_session"
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        return "csrf_token"
    return None


@dataclass(frozen=True)
class HeaderPolicy:
    """The headers every response gets; ``connect`` lists origins pages may stream from."""

    connect: tuple[str, ...] = ()
    https: bool = False
    headers: list[tuple[bytes, bytes]] = field(init=False)

    def __post_init__(self) -> None:
        connect = " ".join(("'self'", *self.connect))
        csp = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {connect}; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'"
        )
        headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            # not "no-referrer": Chromium then sends "Origin: null" on our own form posts
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if self.https:
            headers.append((b"strict-transport-security", b"max-age=31536000"))
        object.__setattr__(self, "headers", headers)


class SecurityHeaders:
    """Pure ASGI middleware (a BaseHTTPMiddleware would get in the way of the streams)."""

    def __init__(self, app: ASGIApp, policy: HeaderPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.policy.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def allowed_hosts(bind: str, names: Iterable[str]) -> frozenset[str]:
    """Host names this server answers to: its bind address and configured names."""
    hosts = {bind.lower(), *(n.lower() for n in names)}
    if bind in ("127.0.0.1", "::1", "localhost"):
        hosts |= {"127.0.0.1", "localhost", "::1"}
    return frozenset(hosts)


def host_name(header: str) -> str:
    """The name in a Host header: ``[::1]:8080`` -> ``::1``, ``gate-b42:443`` -> ``gate-b42``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """Refuse requests for other host names (DNS rebinding) with one plain 400."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], on_refused: Callable[[], None]) -> None:
        self.app = app
        self.hosts = hosts
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.hosts:
                self.on_refused()
                body = b"400 Bad Request: this gate does not answer to that host name\n"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


__all__ = [
    "IDLE_S",
    "MAX_AGE_S",
    "MAX_SESSIONS",
    "THROTTLE_FAILURES",
    "THROTTLE_WINDOW_S",
    "AgentSession",
    "HeaderPolicy",
    "HostCheck",
    "LoginForms",
    "LoginThrottle",
    "SecurityHeaders",
    "SessionStore",
    "allowed_hosts",
    "host_name",
    "refusal",
]
