"""How the screens are served: address, HTTPS, the fleet overview, the privacy notice."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_NAMES = frozenset({"localhost"})
# Where the unit's own screen (the kiosk browser) connects from; the places kept for it
# (streams, connections, sign-ins) are kept for these addresses only.
KIOSK_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_kiosk(client: str | None) -> bool:
    """Whether a client address is the unit's own screen (loopback, default address)."""
    return client in KIOSK_ADDRESSES


@dataclass(frozen=True)
class ScreenSettings:
    bind: str = "127.0.0.1"  # loopback by default; beyond it only over HTTPS
    port: int = 8080  # 0: the kernel picks one (the service logs the URL)
    certificate: Path | None = None  # the unit's HTTPS certificate chain (PEM)
    key: Path | None = None  # its private key (PEM, mode 0600)
    server_names: tuple[str, ...] = ()  # host names the unit answers to, besides `bind`
    peers: tuple[str, ...] = ()  # other units' base URLs, shown in the overview
    overview_origins: tuple[str, ...] = ()  # origins whose overview may read this unit
    metrics: bool = True  # serve /metrics
    retention_us_hours: int = 12  # the matching service's retention, for the notice
    retention_other_days: int = 14
    max_streams: int = 32  # shared live streams open at once (beyond: 503); see limits

    @property
    def https(self) -> bool:
        return self.certificate is not None

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"


__all__ = ["KIOSK_ADDRESSES", "LOOPBACK_NAMES", "ScreenSettings", "is_kiosk", "is_loopback"]
