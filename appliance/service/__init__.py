"""The service systemd runs: configuration, the parts and their wiring, the serve loop,
watchdog and notify, status, the journal, process hardening and the log filter."""

__all__: list[str] = []
