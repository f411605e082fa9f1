"""Receive queues bounded in bytes, and oversized subscriptions refused, on real sockets."""

from __future__ import annotations

import time
from typing import Any

import zmq

from daemons.bus.sockets import SUBSCRIPTION_MAX_BYTES, SocketOptions, make_socket, receive_hwm
from daemons.core.process import free_endpoint


def test_the_receive_queue_holds_a_bounded_number_of_bytes() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        for kind in (zmq.ROUTER, zmq.DEALER, zmq.SUB):
            sock = make_socket(ctx, kind)
            assert sock.getsockopt(zmq.RCVHWM) * sock.getsockopt(zmq.MAXMSGSIZE) <= 128 << 20
            sock.close(0)
        assert receive_hwm(SocketOptions(max_msg_size=4096)) == 10_000  # small frames: the count rules
        assert receive_hwm(SocketOptions(max_msg_size=1 << 30)) == 16
    finally:
        ctx.term()


def test_a_subscriber_sending_an_oversized_subscription_is_cut_off_others_are_not() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    endpoint = free_endpoint()
    pub = make_socket(ctx, zmq.PUB)
    pub.bind(endpoint)
    good = make_socket(ctx, zmq.SUB)  # subscribes to everything, as every schedctl SUB does
    bad = ctx.socket(zmq.SUB)
    bad.setsockopt(zmq.LINGER, 0)
    bad.setsockopt(zmq.SUBSCRIBE, b"x" * (SUBSCRIPTION_MAX_BYTES * 4))
    bad.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        good.connect(endpoint)
        bad.connect(endpoint)
        got_good = got_bad = 0
        deadline = time.monotonic() + 10
        while got_good < 20 and time.monotonic() < deadline:
            pub.send(b"event")
            time.sleep(0.01)
            while good.poll(0):
                good.recv()
                got_good += 1
            while bad.poll(0):
                bad.recv()
                got_bad += 1
        assert got_good >= 20
        assert got_bad == 0  # its subscription was refused with its connection
    finally:
        for s in (pub, good, bad):
            s.close(0)
        ctx.term()
