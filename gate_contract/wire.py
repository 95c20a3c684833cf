"""The wire format: the stubs generated from ``proto/gate/v1/matching.proto`` at set-up.

Everything that speaks gRPC imports them from here, and so do the names the services are
served (and health-checked) under, so each is written down once.
"""

from __future__ import annotations

from gate.v1 import matching_pb2 as pb
from gate.v1 import matching_pb2_grpc as pb_grpc

MATCHING_SERVICE = pb.DESCRIPTOR.services_by_name["Matching"].full_name  # gate.v1.Matching
ENROLLMENT_SERVICE = pb.DESCRIPTOR.services_by_name["Enrollment"].full_name

__all__ = ["ENROLLMENT_SERVICE", "MATCHING_SERVICE", "pb", "pb_grpc"]
