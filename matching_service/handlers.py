"""How every RPC of the service is guarded: refusals, malformed messages, callers gone.

Each handler is wrapped by :func:`guarded`, which turns

* ``Rejected`` into its gRPC status and an audit event, with one log line per peer and
  event per burst (``limits.BurstLog``), so a flood leaves a few lines;
* a message that does not decode (registered with :func:`tolerant` deserializers, so gRPC
  hands the handler a :data:`MALFORMED` marker instead of logging a traceback) into
  ``INVALID_ARGUMENT`` and a ``malformed_message`` event naming the peer;
* a call the client cancelled (its deadline, an opt-out) into one INFO line and a
  ``client_cancelled`` event: normal, not an error;
* anything else into ``INTERNAL`` and an ``internal_error`` event, so no input can take
  the service down.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError, Message

from gate_contract.wire import pb
from matching_service.audit import AuditLog
from matching_service.errors import Rejected
from matching_service.limits import BurstLog

log = logging.getLogger("gate.matcher")

# Refusals a flood repeats: audited once per log line (with the count), not per call.
FLOOD_EVENTS = frozenset(
    {"too_many_streams", "enrollment_rate_limited", "malformed_message", "client_cancelled"}
)


class Malformed:
    """What a message that does not decode arrives as."""

    def __repr__(self) -> str:
        return "<malformed message>"


MALFORMED = Malformed()


def tolerant(message: type[Message]) -> Callable[[bytes], Message | Malformed]:
    """A request deserializer that yields :data:`MALFORMED` instead of raising."""

    def parse(data: bytes) -> Message | Malformed:
        try:
            return message.FromString(data)
        except (DecodeError, ValueError):
            return MALFORMED

    return parse


def register(server: grpc.Server, servicer: object, service: str) -> None:
    """Serve ``servicer``'s methods of the ``gate.v1`` ``service`` on ``server``, with
    :func:`tolerant` request deserializers (the generated ``add_..._to_server`` would let
    gRPC log a traceback for every malformed message)."""
    descriptor = pb.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in descriptor.methods:
        request = getattr(pb, method.input_type.name)
        response = getattr(pb, method.output_type.name)
        kind = (
            grpc.stream_unary_rpc_method_handler
            if method.client_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=tolerant(request),
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
    )


class GuardedService(Protocol):
    audit: AuditLog
    refusals: BurstLog  # WARNING lines, one per peer and event per burst
    cancellations: BurstLog  # INFO lines, the same way

    def now_ms(self) -> int: ...


def peer_address(context: grpc.ServicerContext) -> str:
    """The caller's network address without its port (``ipv4:127.0.0.1``)."""
    peer = context.peer() or "unknown"
    return peer.rsplit(":", 1)[0] if peer.count(":") > 1 else peer


def audit_refusal(
    service: GuardedService,
    method: str,
    exc: Rejected,
    context: grpc.ServicerContext,
    lines: BurstLog | None = None,
) -> None:
    """Log (once per burst) and audit one refusal; flood events only when logged."""
    where = peer_address(context)
    logged = (lines or service.refusals).event(
        f"{exc.event}|{where}",
        "%s refused (%s, %s) from %s: device %r capture %r: %s",
        method,
        exc.event,
        exc.code.name,
        where,
        exc.device_id,
        exc.capture_id,
        exc.message,
    )
    if exc.event in FLOOD_EVENTS and not logged:
        return
    service.audit.security(
        exc.event,
        exc.code.name,
        method=method,
        device_id=exc.device_id,
        capture_id=exc.capture_id,
        detail=f"{exc.message} (from {where})",
        at_ms=service.now_ms(),
    )


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if request is MALFORMED:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT, "malformed_message", "message does not decode"
            )
        yield request


def guarded(method: str, *, stream: bool = False) -> Callable[[Callable], Callable]:
    """Wrap a servicer method as the module docstring says."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(self: GuardedService, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                if stream:
                    request = _checked(request)
                elif request is MALFORMED:
                    raise Rejected(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "malformed_message",
                        "message does not decode",
                    )
                return fn(self, request, context)
            except Rejected as exc:
                gone = exc.event == "client_cancelled"  # normal: one INFO line per burst
                audit_refusal(self, method, exc, context, self.cancellations if gone else None)
                context.abort(exc.code, exc.message)
            except Exception as exc:
                if not context.is_active():  # the caller went away: nothing to answer
                    gone = Rejected(
                        grpc.StatusCode.CANCELLED, "client_cancelled", "the caller cancelled"
                    )
                    audit_refusal(self, method, gone, context, self.cancellations)
                    context.abort(grpc.StatusCode.CANCELLED, "the caller cancelled")
                log.exception("%s failed", method)
                self.audit.security(
                    "internal_error",
                    grpc.StatusCode.INTERNAL.name,
                    method=method,
                    detail=type(exc).__name__,
                    at_ms=self.now_ms(),
                )
                context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return inner

    return wrap


__all__ = [
    "FLOOD_EVENTS",
    "MALFORMED",
    "GuardedService",
    "Malformed",
    "audit_refusal",
    "guarded",
    "peer_address",
    "register",
    "tolerant",
]
