"""The counting behind the flood controls, on their own: stream places, the sign-in
throttle's reservations, the session store holding signed-in agents only."""

from __future__ import annotations

from appliance.gate.agents import Agent, AuthMethod
from appliance.screens.limits import StreamSlots
from appliance.screens.security import (
    MAX_SESSIONS,
    THROTTLE_FAILURES,
    THROTTLE_WINDOW_S,
    LoginForms,
    LoginThrottle,
    SessionStore,
)
from testbed.testing import FakeClock


def test_reserved_places_first_then_a_share_of_the_rest() -> None:
    slots = StreamSlots(shared=3, reserved={"kiosk": 1}, per_client=2)
    kiosk = slots.take("127.0.0.1", "kiosk")
    assert callable(kiosk)
    assert callable(slots.take("127.0.0.1", "kiosk"))  # its own place taken: a shared one
    first = slots.take("10.0.0.9")
    assert callable(slots.take("10.0.0.9"))  # the shared places are now all taken
    assert slots.take("10.0.0.9") == "too_many_streams_client"
    assert slots.take("10.0.0.8") == "too_many_streams"
    assert callable(first)
    first()
    assert callable(slots.take("10.0.0.8"))
    kiosk()
    assert callable(slots.take("127.0.0.1", "kiosk"))


def test_a_reservation_counts_until_it_succeeds() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    held = [throttle.reserve() for _ in range(THROTTLE_FAILURES)]
    assert None not in held and throttle.reserve() is None  # in flight counts already
    throttle.succeeded(held[0])
    assert throttle.reserve() is not None
    clock.advance(THROTTLE_WINDOW_S + 1)
    assert throttle.reserve() is not None


def test_sessions_are_for_signed_in_agents_and_forms_need_none() -> None:
    store = SessionStore()
    agent = Agent("A123", AuthMethod.PIN)
    sids = [store.new(agent)[0] for _ in range(MAX_SESSIONS + 1)]
    assert store.get(sids[0]) is None and store.get(sids[-1]) is not None
    forms = LoginForms()
    nonce = forms.nonce(None)
    assert forms.nonce(nonce) == nonce and forms.nonce("short") != "short"
    assert forms.token(nonce) == forms.token(nonce) != LoginForms().token(nonce)
    assert forms.token(None) is None
