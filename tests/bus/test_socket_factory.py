"""`make_socket` is the one socket factory: every daemon's and the gossip transport's sockets."""

from __future__ import annotations

import ast
import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import zmq

from daemons.bus.sockets import SocketOptions, make_socket
from daemons.core.process import free_endpoint
from daemons.gossip.config import MAX_FRAME_BYTES
from daemons.gossip.memberlist import Memberlist
from daemons.gossip.transport import GOSSIP_SOCKETS, ZmqTransport

ROOT = Path(__file__).resolve().parents[2]
FACTORY = ROOT / "daemons" / "bus" / "sockets.py"


def zmq_socket_calls(path: Path) -> list[int]:
    """Lines calling `<something>.socket(...)` other than the standard library's `socket.socket(...)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "socket"
            and not (isinstance(n.func.value, ast.Name) and n.func.value.id == "socket")]


def test_no_module_but_the_factory_creates_a_zeromq_socket() -> None:
    found = {str(p.relative_to(ROOT)): lines for d in ("daemons", "cli") for p in sorted((ROOT / d).rglob("*.py"))
             if p != FACTORY and (lines := zmq_socket_calls(p))}
    assert found == {}, "create sockets with daemons.bus.sockets.make_socket"
    assert zmq_socket_calls(FACTORY)  # the check does see a context's socket() call


def first_from(router: Any, dealers: list[Any], timeout_s: float = 2.0) -> list[bytes] | None:
    """Send one frame from each dealer in turn; the frames the router receives from the last one."""
    for i, dealer in enumerate(dealers):
        dealer.send(b"hello %d" % i)
    deadline = time.monotonic() + timeout_s
    while router.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        frames: list[bytes] = router.recv_multipart()
        if frames[1] == b"hello %d" % (len(dealers) - 1):
            return frames
    return None


def test_router_handover_lets_a_restarted_peer_take_its_identity_over() -> None:
    """The gossip ROUTER's option: a peer restarted at the same address (same routing id) is heard at
    once, while the old connection is still open; without it the newcomer is refused."""
    ctx: zmq.Context[Any] = zmq.Context()
    same_id = SocketOptions(identity=b"tcp://127.0.0.1:1")
    heard: dict[bool, list[bytes] | None] = {}
    try:
        for handover in (False, True):
            endpoint = free_endpoint()
            router = make_socket(ctx, zmq.ROUTER, SocketOptions(router_handover=handover))
            router.bind(endpoint)
            old, new = make_socket(ctx, zmq.DEALER, same_id), make_socket(ctx, zmq.DEALER, same_id)
            old.connect(endpoint)
            assert first_from(router, [old]) == [same_id.identity, b"hello 0"]
            new.connect(endpoint)
            heard[handover] = first_from(router, [old, new], timeout_s=1.0 if not handover else 5.0)
            for s in (router, old, new):
                s.close(0)
    finally:
        ctx.term()
    assert heard == {False: None, True: [b"tcp://127.0.0.1:1", b"hello 1"]}


def test_the_gossip_transport_sockets_have_the_gossip_options() -> None:
    async def sockets() -> tuple[dict[Any, Any], dict[Any, Any]]:
        addr = free_endpoint()
        transport = ZmqTransport(Memberlist("p0", addr, generation=1), addr)
        await transport.start()
        try:
            dealer = transport._dealer(free_endpoint())
            opts = (zmq.MAXMSGSIZE, zmq.SNDHWM, zmq.RCVHWM, zmq.LINGER, zmq.RECONNECT_IVL, zmq.RECONNECT_IVL_MAX)
            router = {o: transport._router.getsockopt(o) for o in opts}
            return router, {**{o: dealer.getsockopt(o) for o in opts}, zmq.IDENTITY: dealer.getsockopt(zmq.IDENTITY)}
        finally:
            await transport.stop()

    router, dealer = asyncio.run(sockets())
    expected = {zmq.MAXMSGSIZE: MAX_FRAME_BYTES, zmq.SNDHWM: 1000, zmq.RCVHWM: 1000, zmq.LINGER: 0,
                zmq.RECONNECT_IVL: 100, zmq.RECONNECT_IVL_MAX: 1000}
    assert router == expected
    assert dealer.pop(zmq.IDENTITY).decode().startswith("tcp://127.0.0.1:") and dealer == expected
    assert replace(GOSSIP_SOCKETS, identity=None) == GOSSIP_SOCKETS and GOSSIP_SOCKETS.router_handover
