"""recv_routed / send_routed: a ROUTER's request path without recv_multipart (daemons/bus/sockets.py),
on real sockets over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from daemons.bus import make_socket, split_router_frames
from daemons.bus.sockets import recv_routed, send_routed


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    router = make_socket(ctx, zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = make_socket(ctx, zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield router, dealer
    finally:
        router.close(0)
        dealer.close(0)
        ctx.term()


def test_reads_each_message_whole_and_in_order(pair: tuple[Any, Any]) -> None:
    router, dealer = pair
    with pytest.raises(zmq.Again):
        recv_routed(router)
    dealer.send(b"one")
    dealer.send_multipart([b"a", b"b", b"c"])  # malformed: three parts after the identity
    dealer.send(b"")
    dealer.send(b"two")
    got = []
    while len(got) < 4:
        if router.poll(2000):
            got.append(recv_routed(router))
    assert [g[1:] for g in got] == [[b"one"], [b"a", b"b", b"c"], [b""], [b"two"]]
    assert len({g[0] for g in got}) == 1  # the dealer's identity each time
    assert split_router_frames(got[1]) is None and split_router_frames(got[3]) == (got[3][0], b"two")
    with pytest.raises(zmq.Again):
        recv_routed(router)


def test_uncopied_frames_when_asked(pair: tuple[Any, Any]) -> None:
    router, dealer = pair
    dealer.send(b"x")
    assert router.poll(2000)
    identity, payload = recv_routed(router, copy=False)
    assert isinstance(payload, zmq.Frame) and payload.bytes == b"x" and isinstance(identity, zmq.Frame)


def test_replies_reach_the_asker_and_an_unknown_peer_raises(pair: tuple[Any, Any]) -> None:
    router, dealer = pair
    dealer.send(b"ping")
    assert router.poll(2000)
    identity, _ = recv_routed(router)
    send_routed(router, identity, b"pong")
    assert dealer.poll(2000) and dealer.recv_multipart() == [b"pong"]
    with pytest.raises(zmq.ZMQError):  # ROUTER_MANDATORY: nobody by that identity
        send_routed(router, b"\x00nobody", b"pong")
