"""A simulated gossip peer decides as the real one: the same dice, the same view of itself.

Common random numbers: a simulated gossip peer rolls the real peer's dice.

A real peer's placement policy (power-of-d samples, random cold-start targets) draws from
`gossip_mode.peer_rng([node] seed, its name)`; the simulator's peer draws from the same
stream. So a simulated and a real run of one spec make the same random choices wherever
their views agree, as the coordinator's seeded Random already makes them
(test_same_placements.py): validation then compares the models, not two rolls of the dice
(before, the real peers' Random was unseeded and the first cold starts of a validation run
landed on other nodes than the simulated ones, which decided what a node kill took away).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
import zmq.asyncio

from daemons.loadgen.workload import PlannedRequest
from daemons.node.config import NodeConfig
from daemons.node.gossip_mode import GossipMode, HostNode, peer_decide
from daemons.policy import Decision, PlacementRequest
from daemons.sim import NodeKind, SimConfig, simulate
from daemons.sim.engine import Simulation

MODELS = ("facebook/opt-125m", "meta-llama/Llama-2-7b-hf")
KIND = NodeKind("a100-80gb", "ssd", MODELS, 16384, 2.0)
NAMES = ["node-0", "node-1", "node-2", "node-3"]


@pytest.fixture
def ctx() -> Iterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.term()


def real_peer(ctx: zmq.asyncio.Context, name: str, seed: int = NodeConfig.seed) -> GossipMode:
    """A real peer as the node builds it (no socket is opened before start())."""
    return GossipMode(NodeConfig(name=name, scheduler="gossip", seed=seed), ctx, cast(HostNode, None))


def test_simulated_peers_draw_the_real_peers_streams(ctx: zmq.asyncio.Context) -> None:
    sim = Simulation(SimConfig("gossip", [(n, KIND) for n in NAMES], policy="power-of-d"), [])
    for name in NAMES:
        real = real_peer(ctx, name)
        assert [real.rng.random() for _ in range(8)] == [sim.peers[name].rng.random() for _ in range(8)], name


def test_each_peer_has_its_own_repeatable_stream(ctx: zmq.asyncio.Context) -> None:
    first = [real_peer(ctx, n).rng.random() for n in NAMES]
    assert first == [real_peer(ctx, n).rng.random() for n in NAMES]  # a run repeats exactly
    assert len(set(first)) == len(NAMES)  # peers do not herd on one stream
    assert real_peer(ctx, "node-0", seed=7).rng.random() != first[0]  # [node] seed changes them


def test_on_one_view_both_peers_choose_the_same_cold_start(ctx: zmq.asyncio.Context) -> None:
    sim = Simulation(SimConfig("gossip", [(n, KIND) for n in NAMES], policy="power-of-d"), [])
    for name, node in sim.nodes.items():  # every peer's record, as Simulation.run publishes them
        sim.clock.net.add_node(name)
        sim.peers[name].publish(node.snapshot())
    sim.clock.net.bootstrap()
    request = PlacementRequest(MODELS[1], 400, 64)
    for name in NAMES:
        peer, real = sim.peers[name], real_peer(ctx, name)
        want = peer_decide(real.policy, peer.view(), request, real.rng, name, "queue")
        got = peer.decide("r0", request, lambda later: None)
        assert isinstance(got, Decision) and isinstance(want, Decision)
        assert (got.node, got.action) == (want.node, want.action), name


@pytest.mark.parametrize("seed", range(6))
def test_a_peer_counts_the_request_it_places_in_its_own_load(seed: int) -> None:
    # The real agent holds every Infer that arrives (server.py `active`) while gossip mode places
    # it, so the deciding peer's own view shows it busy by one: of two idle nodes that could
    # load the model, the other is cheaper and the request is forwarded. Before, the simulated
    # peer saw itself idle and kept it on a coin flip (validation: sim served its first cold
    # starts locally, hops 0, where the real peers had forwarded them).
    nodes = [(n, KIND) for n in NAMES[:2]]
    schedule = [PlannedRequest("r0", 0.1, MODELS[0], 300, 8)]
    record = simulate(SimConfig("gossip", nodes, policy="power-of-d", peer_seed=seed), schedule).records[0]
    assert record.status == "ok" and record.action == "COLD_START"
    assert record.hops == 1


A10G = NodeKind("a10g-24gb", "ssd", ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"), 16384, 2.0)


@pytest.mark.parametrize("new_tokens", [40, 55, 70, 85, 100])
def test_a_held_request_is_placed_when_the_view_changes(new_tokens: int) -> None:
    # One 24 GB GPU: Llama-3.1 fits only once the busy Llama-2 goes idle and is evicted, so
    # r1 waits in the peer's admission queue. The real peer's waiters wake whenever its view
    # changes (its own state published as r0 ends), not only every RETRY_S: r1's load starts
    # right after r0 ends (before, up to RETRY_S later, wherever the 0.5 s tick fell).
    schedule = [PlannedRequest("r0", 0.0, A10G.models[0], 200, new_tokens),
                PlannedRequest("r1", 0.1, A10G.models[1], 200, 4)]
    config = SimConfig("gossip", [("node-0", A10G)], policy="power-of-d")
    r0, r1 = simulate(config, schedule).records
    assert r0.status == r1.status == "ok" and r1.action == "COLD_START"
    # the modelled load and the launch the agent waits for beyond it (daemons/sim/agent.py)
    load_s = Simulation(config, []).nodes["node-0"].catalog.load_s(A10G.models[1]) + config.agent_costs.launch_s
    assert r1.first_token_s is not None and r0.done_s is not None
    waited_after_r0 = r1.first_token_s - r0.done_s - load_s
    assert 0 <= waited_after_r0 < 0.1, waited_after_r0  # a publication gap, a prefill step
