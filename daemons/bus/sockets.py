"""One place that creates ZeroMQ sockets, so every socket gets the same safe options.

Every socket of the project is made by `make_socket`: the bus's (coordinator, nodes, load
generator, collector, clients) and the gossip transport's; what differs between them is a
`SocketOptions` value, never a second factory.

Why each option (libzmq zmq_setsockopt(3)):
- MAXMSGSIZE: a peer sending a larger frame is disconnected before we allocate it;
- LINGER: the default (-1) makes `ctx.term()` hang on unsent frames at shutdown;
- SNDHWM/RCVHWM: bound memory per peer; ROUTER and PUB drop when full, others block.
  ZeroMQ counts messages, not bytes, so RCVHWM is derived from a byte budget:
  `recv_bytes // max_msg_size` frames (128 by default: 128 MiB per peer at most, instead
  of 10,000 x 1 MiB). The sender's SNDHWM still absorbs bursts on its side;
- PUB: the only frames a PUB receives are subscriptions; ours are all empty (everything),
  so MAXMSGSIZE there is SUBSCRIPTION_MAX_BYTES (room for the CURVE handshake) and a peer
  sending a bigger one is disconnected before ZeroMQ stores it;
- ROUTER_MANDATORY: a reply to a vanished peer raises instead of silently disappearing,
  so the sender can record the outcome;
- RECONNECT_IVL, RECONNECT_IVL_MAX: retry a lost peer after 100 ms, backing off to the
  maximum, instead of hammering a dead peer every 100 ms forever;
- ROUTER_HANDOVER (`router_handover`): a peer reconnecting with the identity of a
  connection the ROUTER still holds (a restarted gossip peer, same address) takes it over
  instead of being refused;
- IDENTITY (`identity`): a DEALER's routing id, which the ROUTER it connects to sees
  (a gossip peer's is its own address, where replies go).

A listening socket handed down by a launcher is adopted when the socket binds, by
`daemons.bus.activation.bind`, not here: sockets are made before their address is known
to be free, and a failed bind is reported by the caller, naming its flag.

`curve` (from `daemons.bus.security.Security`: `.bind_server()` for a socket that binds,
`.client` for one that connects; None = plain) turns on CURVE encryption + ZAP checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import zmq
import zmq.asyncio

from daemons.bus.authz import Identity, check
from daemons.bus.envelope import MAX_FRAME_BYTES, Envelope, decode, encode
from daemons.bus.security import identity_of, refused
from daemons.core.errors import WireError

log = logging.getLogger("schedctl.bus")


SUBSCRIPTION_MAX_BYTES = 4096
# Plain ints: combining pyzmq's enum flags runs enum.Flag.__or__ in Python, on every call.
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)


@dataclass(frozen=True, slots=True)
class SocketOptions:
    max_msg_size: int = MAX_FRAME_BYTES
    hwm: int = 10_000
    recv_bytes: int = 128 << 20  # receive-queue budget per peer, in bytes (see RCVHWM above)
    linger_ms: int = 0
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 2_000
    identity: bytes | None = None
    router_handover: bool = False


class Curve(Protocol):
    def apply(self, sock: Any) -> None: ...


def make_socket(ctx: zmq.Context[Any], kind: int, options: SocketOptions = SocketOptions(),
                curve: Curve | None = None) -> Any:
    """Create a socket of `kind` (zmq.ROUTER, DEALER, PUB, SUB) with the project's options, and
    CURVE when `curve` is given (a `Security`'s `.bind_server()` or `.client`; None = plain).

    Works for a plain and a `zmq.asyncio` context; returns that context's socket type.
    CURVE options must precede bind/connect, so they are applied here.
    """
    sock = ctx.socket(kind)
    if curve is not None:
        try:
            curve.apply(sock)
        except BaseException:
            sock.close(0)
            raise
    max_size = min(options.max_msg_size, SUBSCRIPTION_MAX_BYTES) if kind == zmq.PUB else options.max_msg_size
    sock.setsockopt(zmq.MAXMSGSIZE, max_size)
    sock.setsockopt(zmq.LINGER, options.linger_ms)
    sock.setsockopt(zmq.SNDHWM, options.hwm)
    sock.setsockopt(zmq.RCVHWM, receive_hwm(options))
    sock.setsockopt(zmq.RECONNECT_IVL, options.reconnect_ivl_ms)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, options.reconnect_ivl_max_ms)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if options.router_handover:
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    if options.identity is not None:
        sock.setsockopt(zmq.IDENTITY, options.identity)
    return sock


def receive_hwm(options: SocketOptions) -> int:
    """Frames queued per peer so that they hold at most `recv_bytes` (at least 16)."""
    return max(16, min(options.hwm, options.recv_bytes // max(1, options.max_msg_size)))


def parse_frame(frame: bytes, peer: str | bytes = "?") -> Envelope | None:
    """Decode one frame; on any wire error log one line and return None (drop it).

    `peer` names the sender in that line; bytes are a ROUTER identity, written as
    `client <hex>` (only when a line is written: formatting it costs as much as a check)."""
    try:
        return decode(frame)
    except WireError as exc:
        who = f"client {peer.hex()}" if isinstance(peer, bytes) else peer
        log.warning("dropped malformed frame from %s: %s", who, exc,
                    extra={"SCHEDCTL_CAUSE": f"malformed:{type(exc).__name__}"})
        return None


def recv_routed(sock: Any, copy: bool = True) -> list[Any]:
    """One waiting message of a ROUTER, its identity frame first; zmq.Again when none waits.

    What `recv_multipart(zmq.NOBLOCK)` returns, at half its cost on a request path: a ROUTER's
    message always has its identity and at least one more part (libzmq zmq_socket(3)), and a
    message arrives whole, so two receives need no RCVMORE look between them; one look after
    them finds the rare extra parts (a malformed request, dropped by split_router_frames)."""
    frames = [sock.recv(_NOBLOCK, copy=copy), sock.recv(_NOBLOCK, copy=copy)]
    while sock.getsockopt(_RCVMORE):
        frames.append(sock.recv(_NOBLOCK, copy=copy))
    return frames


def send_routed(sock: Any, identity: bytes, frame: bytes) -> None:
    """`send_multipart([identity, frame], zmq.NOBLOCK)` on a ROUTER, without its per-call list
    handling. Raises what it raises: a full pipe or an unknown peer (ROUTER_MANDATORY) fails on
    the identity part, before anything is queued."""
    sock.send(identity, _NOBLOCK_MORE)
    sock.send(frame, _NOBLOCK)


def authenticated(frames: list[Any]) -> tuple[list[bytes], Identity | None]:
    """The bytes of frames received with `copy=False`, and the identity ZAP gave their sender.

    Daemons receive with `copy=False` only when CURVE is on (a zmq.Frame per part costs more
    than bytes for small messages); plain bytes pass through with no identity.
    """
    if not frames or isinstance(frames[0], bytes):
        return frames, None
    return [f.bytes for f in frames], identity_of(frames[-1])


def guard(identity: Identity | None, mtype: str, sender: str, body: Any = None) -> bool:
    """True when an authenticated peer may send this (authz.check); else log it, rate-limited."""
    why = check(identity, mtype, sender, body)
    if why is None:
        return True
    # One bucket per (type, sender): a flood from one key cannot hide another's refusals.
    refused(f"{mtype} from {identity.name if identity else 'an unauthenticated peer'}", f"dropped: {why}")
    return False


def split_router_frames(frames: list[bytes]) -> tuple[bytes, bytes] | None:
    """A ROUTER receives [identity, payload] from a DEALER; anything else is dropped."""
    if len(frames) != 2:
        log.warning("dropped message with %d frames (expected identity + payload)", len(frames))
        return None
    return frames[0], frames[1]


__all__ = ["SUBSCRIPTION_MAX_BYTES", "Curve", "SocketOptions", "authenticated", "encode", "guard", "make_socket",
           "parse_frame", "receive_hwm", "recv_routed", "send_routed", "split_router_frames"]
