"""The on-device program of the gate: the rooms follow one traveller through the pipeline.

``vision`` (camera, detection, quality, frame selection) -> ``custody`` (the buffers of a
capture, the sealed payload, the purge ledger) -> ``matching`` (the client that returns a
checked verdict) -> ``gate`` (the state machine and workflow; pure logic) -> ``pipeline``
(one traveller through all of them) -> ``service`` (what systemd runs) -> ``ops``
(``gatectl``). Each room imports only the rooms before it and the kernel modules here:
``errors`` (every exception), ``paths``, ``shutdown`` and ``log_context``.
"""

__all__: list[str] = []
