"""Sparrow on the simulated engine: the simulated peer probes whom the real rule probes, the
first peer with a free slot wins (late binding), and a round nobody answers falls back.

The probes travel over the simulated wire and the rounds run the policy's own sans-IO
`ProbeRace` and `ProbeHold` (daemons/policy/sparrow.py) on the virtual clock; the real peer
drives the same two (daemons/node/gossip_mode.py, tests/node/test_probe_answer.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from random import Random
from typing import cast

import pytest
import zmq.asyncio

from daemons.node.config import NodeConfig
from daemons.node.gossip_mode import GossipMode, HostNode
from daemons.policy import Decision, PlacementRequest, Refusal
from daemons.policy.sparrow import PROBE_TIMEOUT_S, PROBE_WAIT_S, Sparrow
from daemons.sim import NodeKind, SimConfig
from daemons.sim.engine import Simulation
from daemons.sim.peer import SimPeer

MODELS = ("facebook/opt-125m", "meta-llama/Llama-2-7b-hf")
KIND = NodeKind("a100-80gb", "ssd", MODELS, 16384, 2.0)
NAMES = ["node-0", "node-1", "node-2", "node-3"]
REQUEST = PlacementRequest(MODELS[0], 300, 16)


def converged(names: list[str]) -> Simulation:
    """A sparrow cluster whose peers know each other's records, the clock at 0."""
    sim = Simulation(SimConfig("gossip", [(n, KIND) for n in names], policy="sparrow"), [])
    for name, node in sim.nodes.items():  # every peer's record, as Simulation.run publishes them
        sim.clock.net.add_node(name)
        sim.peers[name].publish(node.snapshot())
    sim.clock.net.bootstrap()
    return sim


def busy(sim: Simulation, node: str) -> list[str]:
    """Fill `node` to Sparrow's slot count with held requests: its probes wait. Their ids."""
    policy = sim.peers[node].sparrow
    ids = [f"busy-{node}-{i}" for i in range(policy.slots)]
    for rid in ids:
        sim.nodes[node].hold(rid)
    return ids


def probing(peer: SimPeer, others: list[str]) -> None:
    """Roll the peer's dice on until its next round probes exactly `others`, in that order."""
    assert isinstance(peer.policy, Sparrow)
    view = peer.view()
    for _ in range(100):
        trial = Random()
        trial.setstate(peer.rng.getstate())
        probes = peer.policy.probes(view, REQUEST, trial, peer.name)
        if probes is not None and [o.node.name for o in probes.options] == others:
            return
        peer.rng.setstate(trial.getstate())
    raise AssertionError(f"{peer.name} never drew {others}")


def decide(sim: Simulation, peer: SimPeer, rid: str, until_s: float) -> tuple[list[Decision | Refusal], list[float]]:
    """Start `peer`'s choice for REQUEST and run the clock to `until_s`: the decisions and when."""
    got: list[Decision | Refusal] = []
    when: list[float] = []

    def then(decision: Decision | Refusal) -> None:
        got.append(decision)
        when.append(sim.clock.now)

    assert peer.choose(rid, REQUEST, then) is None  # it probes first
    sim.clock.run_until(until_s)
    return got, when


def test_a_probe_to_a_busy_peer_loses_to_a_free_one() -> None:
    sim = converged(NAMES[:3])
    prober = sim.peers["node-0"]
    busy(sim, "node-1")
    probing(prober, ["node-1", "node-2"])  # the busy one is asked first: it would answer first
    got, when = decide(sim, prober, "r1", 0.2)
    (decision,) = got
    assert isinstance(decision, Decision) and decision.node == "node-2"
    assert decision.reason == "sparrow: first of 2 probed peers to answer"
    assert when[0] == pytest.approx(2 * sim.config.latency_s, abs=1e-3)  # one round trip, not the timeout
    assert prober.probe_fallbacks == 0


def test_a_busy_peer_that_frees_a_slot_in_time_wins() -> None:
    # Late binding: both candidates are full; the first whose slot frees answers at its next
    # published state and gets the request, before the prober's timeout.
    sim = converged(NAMES[:3])
    prober = sim.peers["node-0"]
    held = busy(sim, "node-1")
    busy(sim, "node-2")
    probing(prober, ["node-2", "node-1"])
    sim.clock.at(0.1, lambda: sim.nodes["node-1"].let_go(held[0]))
    got, when = decide(sim, prober, "r2", PROBE_TIMEOUT_S + 0.1)
    (decision,) = got
    assert isinstance(decision, Decision) and decision.node == "node-1"
    assert 0.1 < when[0] < PROBE_TIMEOUT_S


def test_no_answer_within_the_timeout_falls_back_and_busy_peers_say_nothing() -> None:
    sim = converged(NAMES[:3])
    prober = sim.peers["node-0"]
    busy(sim, "node-1")
    busy(sim, "node-2")
    probing(prober, ["node-1", "node-2"])
    replies: list[str] = []
    answered = prober.probe_replied
    prober.probe_replied = lambda reply, endpoint: (replies.append(endpoint), answered(reply, endpoint))  # type: ignore[method-assign]
    got, when = decide(sim, prober, "r3", PROBE_WAIT_S + 0.5)
    (decision,) = got
    assert when == [pytest.approx(PROBE_TIMEOUT_S)]
    assert isinstance(decision, Decision) and decision.reason.startswith("power-of-2")  # Sparrow's fallback
    assert prober.probe_fallbacks == 1 and prober.probe_rounds == 1
    assert replies == []  # still full after hold_s: the probed peers gave up without a word


def test_a_probe_to_a_dead_peer_is_lost_and_the_round_falls_back() -> None:
    sim = converged(NAMES[:3])
    prober = sim.peers["node-0"]
    probing(prober, ["node-1", "node-2"])
    for name in ("node-1", "node-2"):
        sim.wire.kill(name)
    got, when = decide(sim, prober, "r4", 1.0)
    assert len(got) == 1 and when == [pytest.approx(PROBE_TIMEOUT_S)]


@pytest.fixture
def ctx() -> Iterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.term()


def test_the_simulated_peer_probes_whom_the_real_rule_probes(ctx: zmq.asyncio.Context) -> None:
    # Common random numbers: the same view, request and dice give the same candidates.
    sim = converged(NAMES)
    sent: list[str] = []
    for name in NAMES:
        peer = sim.peers[name]
        real = GossipMode(NodeConfig(name=name, scheduler="gossip", gossip_policy="sparrow"), ctx,
                          cast(HostNode, None))
        assert isinstance(real.policy, Sparrow)
        peer.link = lambda src, dst, deliver: sent.append(dst)
        for i, model in enumerate(MODELS * 3):
            request = PlacementRequest(model, 300 + i, 16)
            want = real.policy.probes(peer.view(), request, real.rng, name)
            sent.clear()
            assert peer.choose(f"{name}-r{i}", request, lambda decision: None) is None
            assert want is not None and [f"sim://{dst}" for dst in sent] == want.endpoints, (name, i)
