"""Matching: the appliance's side of the contract with the matching service.

``client`` (mutual-TLS channel, sealed upload, checked verdict), ``answers`` (the domain
``Verdict``, ``Decision`` and ``Session`` the gate's logic sees), ``breaker`` (fail fast
while the service is down) and ``enrollment`` (a unit gets its certificate). gRPC and
the wire format stay inside this room.
"""

__all__: list[str] = []
