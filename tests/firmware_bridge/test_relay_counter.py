"""The host's relay counter rules (``relay_counter.RelayCounter``): pure logic, each rule
with the case that breaks it. The same rules through the real link and a line attacker
are in ``test_line_attacks.py``."""

import pytest

from firmware_bridge.errors import CounterImplausible
from firmware_bridge.protocol import EPOCH_LOCKED
from firmware_bridge.relay_counter import COUNTER_END, MAX_COUNTER_JUMP, RelayCounter


def test_nothing_is_signed_before_the_mcu_proved_where_it_stands() -> None:
    with pytest.raises(CounterImplausible, match="not known yet"):
        RelayCounter().next_pulse()


def test_the_first_greeting_is_taken_and_pulses_count_up_from_it() -> None:
    counter = RelayCounter(start=10)
    counter.adopt(3, 7)  # below the configured start: the start wins
    assert counter.next_pulse() == (3, 11)
    fresh = RelayCounter()
    fresh.adopt(3, 500)
    assert fresh.next_pulse() == (3, 501) and fresh.fault is None


def test_within_an_epoch_the_counter_never_goes_back() -> None:
    counter = RelayCounter()
    counter.adopt(0, 40)
    counter.adopt(0, 5)  # an MCU behind this host: it keeps its own
    assert counter.next_pulse() == (0, 41)


def test_a_jump_beyond_the_window_is_a_fault_that_stays() -> None:
    counter = RelayCounter()
    counter.adopt(0, 40)
    counter.adopt(0, 40 + MAX_COUNTER_JUMP)  # within the window: followed
    with pytest.raises(CounterImplausible, match="jumped"):
        counter.adopt(0, 41 + 2 * MAX_COUNTER_JUMP)
    with pytest.raises(CounterImplausible, match="jumped"):
        counter.next_pulse()
    assert counter.value == 40 + MAX_COUNTER_JUMP  # the jump was not taken


@pytest.mark.parametrize("mcu_counter", [COUNTER_END, 0xFFFFFFFE, 0xFFFFFFFF])
def test_a_counter_at_its_end_is_never_used_even_at_the_first_greeting(mcu_counter: int) -> None:
    counter = RelayCounter()
    with pytest.raises(CounterImplausible, match="provision --rotate"):
        counter.adopt(0, mcu_counter)
    assert counter.epoch is None and counter.value == 0
    with pytest.raises(CounterImplausible):
        counter.next_pulse()


def test_a_locked_store_or_an_epoch_going_back_needs_a_redeploy() -> None:
    with pytest.raises(CounterImplausible, match="firmware deploy"):
        RelayCounter().adopt(EPOCH_LOCKED, 0)
    counter = RelayCounter()
    counter.adopt(5, 1)
    with pytest.raises(CounterImplausible, match="went back"):
        counter.adopt(4, 1)


def test_a_new_epoch_starts_the_counter_again_and_clears_the_fault() -> None:
    counter = RelayCounter()
    counter.adopt(0, 10)
    with pytest.raises(CounterImplausible):
        counter.adopt(0, 0xFFFFFFFE)
    counter.adopt(1, 0)
    assert counter.fault is None and counter.next_pulse() == (1, 1)


def test_the_host_stops_short_of_the_end_by_itself() -> None:
    counter = RelayCounter()
    counter.adopt(0, COUNTER_END - 2)
    assert counter.next_pulse() == (0, COUNTER_END - 1)
    with pytest.raises(CounterImplausible, match="used up"):
        counter.next_pulse()


def test_a_start_at_or_past_the_end_is_refused() -> None:
    with pytest.raises(ValueError, match="counter_start"):
        RelayCounter(start=COUNTER_END)
