"""Recover the gate's relay counter: start a new counter epoch on the MCU.

What ``gatectl provision --rotate`` runs (with the gate service stopped: the port must be
free). NEW_EPOCH is tagged with the relay key, so nobody on the line can send it, and the
only value it takes from the line is the MCU's own epoch, read from a STATUS that answers
this host's nonce under the key: a counter at its end, poisoned, or refused by the host
as implausible (``relay_counter``) starts again at 0 in the next epoch, and no pulse
signed in an older epoch verifies again. A locked counter store (both flash slots torn)
is beyond it: that needs a redeploy (``gatectl firmware deploy``).
"""

from __future__ import annotations

from firmware_bridge.host import GateLink


def start_new_counter_epoch(port: str, key: bytes) -> str:
    """Move the MCU on ``port`` to its next epoch, counter 0; -> what was done, one line.

    Raises ``LinkError`` (no MCU answers; ``NotAuthentic``: it holds another key;
    ``CounterImplausible``: its store is locked) or ``CommandRejected``.
    """
    link = GateLink(port, key)
    try:
        link.open()
        before, after = link.start_new_epoch()
    finally:
        link.close()
    return (
        f"new epoch {after.epoch}, counter 0 (was epoch {before.epoch} at counter "
        f"{before.last_counter})"
    )


__all__ = ["start_new_counter_epoch"]
