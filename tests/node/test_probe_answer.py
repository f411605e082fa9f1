"""GossipMode.answer_probe, Sparrow's late binding on the probed side: a peer with a free slot
answers at once, a busy one when a slot frees (its next published state), else never.

A unit test of that one function: the node it runs in is a stand-in HostNode whose load the
test sets; the gossip agent is real (bound on loopback), as `publish` needs it running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import zmq.asyncio

from daemons.bus import Envelope, parse_frame
from daemons.core.messages import ClusterEvent, Infer, ModelState, NodeState, Probe, ProbeReply
from daemons.node.config import NodeConfig
from daemons.node.gossip_mode import GossipMode
from daemons.node.testing import free_endpoint

SMALL = "facebook/opt-125m"


class Host:
    """The node side: a load the test sets, the frames gossip mode sends."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.sent: list[Envelope] = []

    def local_state(self) -> NodeState:
        return NodeState("node-0", "tcp://127.0.0.1:1", 1, 1, [], [ModelState(SMALL, "ready")], 0,
                         scheduler="gossip", in_flight=self.in_flight)

    async def serve_locally(self, client: bytes, request: Infer) -> bool:
        return False

    async def send(self, client: bytes, frame: bytes) -> None:
        env = parse_frame(frame, "test")
        assert env is not None
        self.sent.append(env)

    def announce(self, event: ClusterEvent) -> None:
        pass


@pytest.fixture
async def peer() -> AsyncIterator[tuple[GossipMode, Host]]:
    ctx = zmq.asyncio.Context()
    host = Host()
    mode = GossipMode(NodeConfig(scheduler="gossip", gossip_bind=free_endpoint(), gossip_preset="ci",
                                 gossip_policy="sparrow"), ctx, host)
    await mode.start()
    try:
        yield mode, host
    finally:
        await mode.stop()
        ctx.term()


async def test_a_peer_with_a_free_slot_answers_at_once(peer: tuple[GossipMode, Host]) -> None:
    mode, host = peer
    host.in_flight = mode.sparrow.slots - 1
    await asyncio.wait_for(mode.answer_probe(b"c", Probe("r1", SMALL)), 0.1)
    (env,) = host.sent
    assert env.body == ProbeReply("r1", "node-0", mode.sparrow.slots - 1, True) and env.id == "r1"


async def test_a_busy_peer_answers_when_its_state_shows_a_free_slot(peer: tuple[GossipMode, Host]) -> None:
    mode, host = peer
    host.in_flight = mode.sparrow.slots
    answering = asyncio.create_task(mode.answer_probe(b"c", Probe("r2", "other/model")))
    await asyncio.sleep(0.1)
    assert not host.sent and not answering.done()
    mode.publish(host.local_state())  # a state change that frees nothing: still waiting
    await asyncio.sleep(0.05)
    assert not answering.done()
    host.in_flight -= 1
    mode.publish(host.local_state())  # a request finished here
    await asyncio.wait_for(answering, 0.1)
    (env,) = host.sent
    assert env.body == ProbeReply("r2", "node-0", mode.sparrow.slots - 1, False)


async def test_a_peer_still_busy_after_the_hold_says_nothing(peer: tuple[GossipMode, Host]) -> None:
    mode, host = peer
    host.in_flight = mode.sparrow.slots + 2
    began = time.monotonic()
    await asyncio.wait_for(mode.answer_probe(b"c", Probe("r3", SMALL)), mode.sparrow.hold_s + 0.5)
    assert time.monotonic() - began >= mode.sparrow.hold_s - 0.01
    assert host.sent == []  # a less loaded peer wins
