"""Custody of the frame: who holds every buffer of a capture and proves it was purged.

``transaction`` (the buffers of one capture and their purge), ``payload`` (crop, JPEG and
seal, in memory), ``ledger`` (the signed, hash-chained purge ledger, with intent records
for captures in flight), ``receipts`` (purge receipts owed to the service, on disk until
delivered) and ``audit`` (what ``gatectl audit`` shows an auditor).
"""

__all__: list[str] = []
