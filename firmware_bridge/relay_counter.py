"""The host's relay counter: what it takes from the MCU, and what it refuses.

Every RELAY_PULSE carries a counter the MCU must not have seen in the current epoch. The
host learns where the MCU stands only from an authenticated STATUS (it answers the host's
own nonce, ``protocol.status_authentic``), and even then it does not follow the MCU
anywhere: within one epoch it never moves its counter back, never more than
:data:`MAX_COUNTER_JUMP` ahead of what it saw last, and it never uses a counter at or past
:data:`COUNTER_END`. Such a counter is a fault: the gate stays out of service, with the
reason, until a new epoch (``NEW_EPOCH``, run by ``gatectl provision --rotate``) starts
the counter again at 0. No value anyone can put on the line is ever adopted.
"""

from firmware_bridge.errors import CounterImplausible
from firmware_bridge.protocol import EPOCH_LOCKED

# A counter this high is taken as poisoned or used up: 2**24 pulses short of the end is
# still years of boarding, and no gate gets here honestly within one epoch.
COUNTER_END = 0xFF000000
# How far the MCU may be ahead of what this host saw: only pulses the host itself sent
# move it (another program on the port is stopped first), so a few are slack enough.
MAX_COUNTER_JUMP = 64
NEW_EPOCH_HINT = "start a new counter epoch with `gatectl provision --rotate`"
REDEPLOY_HINT = (
    "redeploy the firmware (SERVICE jumper, `gatectl firmware deploy`: see "
    "firmware_bridge/mcu/README.md)"
)


class RelayCounter:
    """(epoch, counter) of the next pulses, kept monotonic; ``fault`` says why not."""

    def __init__(self, start: int = 0) -> None:
        if not 0 <= start < COUNTER_END:
            raise ValueError(f"counter_start must be below {COUNTER_END:#x}")
        self._start = start
        self.epoch: int | None = None  # unknown until the first authenticated STATUS
        self.value = start  # the last counter used or seen
        self.fault: str | None = None

    def adopt(self, epoch: int, last_counter: int) -> None:
        """Take the MCU's authenticated (epoch, last counter); raises CounterImplausible."""
        problem = self._problem(epoch, last_counter)
        if problem is not None:
            self.fault = problem
            raise CounterImplausible(problem)
        if self.epoch is None:
            self.value = max(self._start, last_counter)
        elif epoch > self.epoch:
            self.value = last_counter  # a new epoch starts the counter again
        else:
            self.value = max(self.value, last_counter)
        self.epoch = epoch
        self.fault = None

    def next_pulse(self) -> tuple[int, int]:
        """-> (epoch, counter) for the next pulse; raises CounterImplausible."""
        if self.fault is not None:
            raise CounterImplausible(self.fault)
        if self.epoch is None:
            raise CounterImplausible("the MCU's counter is not known yet (no greeting)")
        if self.value + 1 >= COUNTER_END:
            self.fault = (
                f"relay counter of epoch {self.epoch} used up at {self.value}: {NEW_EPOCH_HINT}"
            )
            raise CounterImplausible(self.fault)
        self.value += 1
        return self.epoch, self.value

    def _problem(self, epoch: int, counter: int) -> str | None:
        if epoch == EPOCH_LOCKED:
            return f"the MCU's relay counter store is unreadable (locked): {REDEPLOY_HINT}"
        if counter >= COUNTER_END:
            return (
                f"the MCU's relay counter {counter:#010x} of epoch {epoch} is at its end "
                f"(limit {COUNTER_END:#010x}): {NEW_EPOCH_HINT}"
            )
        if self.epoch is None:
            return None
        if epoch < self.epoch:
            return (
                f"the MCU's relay counter epoch went back from {self.epoch} to {epoch}: "
                f"{REDEPLOY_HINT}"
            )
        if epoch == self.epoch and counter > self.value + MAX_COUNTER_JUMP:
            return (
                f"the MCU's relay counter jumped from {self.value} to {counter} in epoch "
                f"{epoch} (more than {MAX_COUNTER_JUMP} pulses this host did not send): "
                f"{NEW_EPOCH_HINT}"
            )
        return None


__all__ = ["COUNTER_END", "MAX_COUNTER_JUMP", "NEW_EPOCH_HINT", "REDEPLOY_HINT", "RelayCounter"]
