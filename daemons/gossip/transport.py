"""`ZmqTransport`: drives one `Memberlist` over real ZeroMQ sockets with asyncio.

Sockets (made by the project's one factory, `daemons.bus.sockets.make_socket`, with
`GOSSIP_SOCKETS`); libzmq zmq_setsockopt(3); ZeroMQ Guide, ch. 4):

- one ROUTER bound at our gossip address receives every frame as
  ``[identity, payload]``; the identity is the sender's advertised gossip address
  (DEALERs set it as their routing id), which is where replies go;
- one DEALER per peer, connected on first send, with our address as routing id.
  Sends use DONTWAIT: a full pipe (dead or slow peer) drops the frame instead of
  blocking the loop; SWIM tolerates loss by design and never blames sockets.

Frames are decoded with the hardened codec; malformed ones are dropped and
counted, and each cause is logged once, so a hostile or broken peer can neither
crash the daemon nor flood its log (the prototype died on one bad packet).

Three asyncio tasks: the receive loop; the protocol timer, which sleeps until the
machine's ``next_deadline()``; and a 100 ms tick whose lateness is fed to
Lifeguard's local health, since a stalled loop makes *us* the slow observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import zmq
import zmq.asyncio

from daemons.bus import activation
from daemons.bus.security import CurveClient, CurveServer
from daemons.bus.sockets import SocketOptions, authenticated, guard, make_socket
from daemons.gossip.config import MAX_FRAME_BYTES
from daemons.gossip.memberlist import EventKind, MemberEvent, Memberlist, Outbound
from daemons.gossip.messages import MAX_ADDR_LEN, GossipDecodeError, decode, encode

log = logging.getLogger("schedctl.gossip")

TICK_S = 0.1  # the event-loop health tick (derived from SWIM and memberlist)
MAX_PEER_SOCKETS = 4096  # DEALERs kept open; the least recently used beyond this are closed
_SCHEMES = ("tcp://", "ipc://", "inproc://")


# What gossip asks of the socket factory, beyond the bus's defaults:
# - max_msg_size 64 KiB, the protocol's frame limit: a larger frame disconnects its sender
#   before we allocate it;
# - hwm 1000 (SNDHWM and RCVHWM): bounded memory per peer; a DEALER to a dead peer fills up
#   and then EAGAINs, which our DONTWAIT sends turn into drops;
# - router_handover: a restarted peer with the same address takes its identity over;
# - reconnect_ivl_max 1 s: a restarted peer is found again quickly.
# LINGER stays 0: closing never waits for unsent gossip (it is stale by then anyway).
GOSSIP_SOCKETS = SocketOptions(max_msg_size=MAX_FRAME_BYTES, hwm=1000, reconnect_ivl_max_ms=1000,
                               router_handover=True)


@dataclass(slots=True)
class TransportStats:
    """Traffic counters (monotonic), for views and benchmarks."""

    msgs_in: int = 0
    msgs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    send_dropped: int = 0
    malformed: dict[str, int] = field(default_factory=dict)


class ZmqTransport:
    """Runs a `Memberlist` on a ROUTER socket bound at `bind` (see module docstring)."""

    def __init__(
        self,
        memberlist: Memberlist,
        bind: str,
        *,
        on_events: Callable[[list[MemberEvent]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        ctx: zmq.asyncio.Context | None = None,
        curve_server: CurveServer | None = None,
        curve_client: CurveClient | None = None,
    ) -> None:
        self.ml = memberlist
        # With [security]: the ROUTER is a ZAP-checked CURVE server (start_zap on `ctx` first),
        # every DEALER a CURVE client.
        self._curve_server, self._curve_client = curve_server, curve_client
        self.bind = bind
        self.bound = ""  # the endpoint really bound, once started
        self.stats = TransportStats()
        self._on_events = on_events
        self._clock = clock
        self._own_ctx = ctx is None
        self._ctx = ctx or zmq.asyncio.Context()
        # DEALERs are plain sockets on the same libzmq context: a DONTWAIT send either
        # succeeds or raises Again at once, with no future to await or leak.
        self._sync_ctx: zmq.Context[Any] = zmq.Context.shadow(self._ctx.underlying)
        self._router: Any = None
        self._dealers: OrderedDict[str, Any] = OrderedDict()
        self._dealer_options = replace(GOSSIP_SOCKETS, identity=memberlist.addr.encode())
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._sleep_until = float("inf")
        self._logged: set[str] = set()
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind and start the receive, timer and health tasks."""
        self._router = make_socket(self._ctx, zmq.ROUTER, GOSSIP_SOCKETS, curve=self._curve_server)
        # The launcher's listening socket if it handed one down (daemons/bus/activation.py).
        self.bound = activation.bind(self._router, self.bind)
        self._tasks = [
            asyncio.create_task(self._recv_loop(), name="gossip-recv"),
            asyncio.create_task(self._timer_loop(), name="gossip-timer"),
            asyncio.create_task(self._health_loop(), name="gossip-health"),
        ]

    async def stop(self) -> None:
        """Cancel the tasks and close every socket (LINGER 0: returns at once)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in self._dealers.values():
            sock.close(linger=0)
        self._dealers.clear()
        if self._router is not None:
            self._router.close(linger=0)
        if self._own_ctx:
            self._ctx.term()

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------ driving the machine
    def run(self, outs: list[Outbound]) -> None:
        """Send what the machine produced, hand over its events, re-arm the timer."""
        for addr, msg in outs:
            self._send(addr, msg)
        events = self.ml.drain_events()
        if events:
            self._close_reaped(events)
            if self._on_events is not None:
                self._on_events(events)
        if self.ml.next_deadline() < self._sleep_until:
            self._wake.set()

    async def _recv_loop(self) -> None:
        router = self._router
        while True:
            # With CURVE, frames come uncopied: their User-Id is the sender's authenticated identity.
            frames = await router.recv_multipart(copy=self._curve_server is None)
            try:
                self._handle(frames)
            except Exception:  # one bad frame must never stop the loop
                log.exception("gossip: error handling a frame; dropped")

    def _handle(self, frames: list[Any]) -> None:
        frames, peer = authenticated(frames)
        if len(frames) != 2:
            self._malformed("frames", f"{len(frames)} frames")
            return
        identity, payload = frames
        self.stats.msgs_in += 1
        self.stats.bytes_in += len(payload)
        addr = _peer_addr(identity)
        if addr is None:
            self._malformed("identity", repr(identity[:32]))
            return
        try:
            msg = decode(payload)
        except GossipDecodeError as exc:
            self._malformed(exc.cause, f"{exc} from {addr}")
            return
        # CURVE on: a frame's sender must be the authenticated node itself (daemons/bus/authz.py).
        # What it asserts about others (piggybacked items) is bounded by the protocol (state.py).
        if self._curve_server is not None and not guard(peer, "gossip", msg.sender):
            return
        self.run(self.ml.receive(self._clock(), addr, msg))

    async def _timer_loop(self) -> None:
        while True:
            self.run(self.ml.tick(self._clock()))
            self._sleep_until = self.ml.next_deadline()
            self._wake.clear()
            delay = max(0.0, self._sleep_until - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 1.0))
            self._sleep_until = float("inf")

    async def _health_loop(self) -> None:
        while True:
            start = self._clock()
            await asyncio.sleep(TICK_S)
            self.ml.note_loop_lag(max(0.0, self._clock() - start - TICK_S))

    # ------------------------------------------------------------ sockets
    def _send(self, addr: str, msg: Any) -> None:
        try:
            data = encode(msg)
        except Exception as exc:  # a bug, not the network: log it, never crash the loop
            self._malformed("encode", repr(exc))
            return
        if len(data) > MAX_FRAME_BYTES:
            self._malformed("encode-oversize", f"{len(data)} bytes to {addr}")
            return
        sock = self._dealer(addr)
        if sock is None:
            return
        try:
            sock.send(data, zmq.DONTWAIT)
        except zmq.Again:
            self.stats.send_dropped += 1  # peer's pipe is full: it is dead or far behind
            return
        except zmq.ZMQError as exc:
            self.stats.send_dropped += 1
            self._malformed("send", f"{exc} to {addr}")
            return
        self.stats.msgs_out += 1
        self.stats.bytes_out += len(data)

    def _dealer(self, addr: str) -> Any:
        sock = self._dealers.get(addr)
        if sock is not None:
            self._dealers.move_to_end(addr)
            return sock
        if not addr.startswith(_SCHEMES) or len(addr) > MAX_ADDR_LEN:
            self._malformed("bad-address", addr[:64])
            return None
        sock = make_socket(self._sync_ctx, zmq.DEALER, self._dealer_options, curve=self._curve_client)
        try:
            sock.connect(addr)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._malformed("connect", f"{exc}: {addr[:64]}")
            return None
        self._dealers[addr] = sock
        while len(self._dealers) > MAX_PEER_SOCKETS:
            _, old = self._dealers.popitem(last=False)
            old.close(linger=0)
        return sock

    def _close_reaped(self, events: list[MemberEvent]) -> None:
        for ev in events:
            if ev.kind is EventKind.REAPED:
                sock = self._dealers.pop(ev.addr, None)
                if sock is not None:
                    sock.close(linger=0)

    def _malformed(self, cause: str, detail: str) -> None:
        self.stats.malformed[cause] = self.stats.malformed.get(cause, 0) + 1
        if cause not in self._logged:
            self._logged.add(cause)  # once per cause: a flood must not become a log flood
            log.warning("gossip: dropped frame (%s): %s; further drops of this kind are only counted", cause, detail)


def _peer_addr(identity: bytes) -> str | None:
    try:
        addr = identity.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not addr.startswith(_SCHEMES) or len(addr) > MAX_ADDR_LEN or not addr.isprintable():
        return None
    return addr


__all__ = ["GOSSIP_SOCKETS", "MAX_PEER_SOCKETS", "TICK_S", "TransportStats", "ZmqTransport"]
