"""One decision function, not two: the simulated coordinator places exactly as the real one.

The same node states and the same sequence of schedule requests go (a) to a real
`schedctl start coordinator` process over ZeroMQ and (b) to the simulator's coordinator on
its virtual clock. Each placement (node and action) must be identical, for every policy,
including the random ones (both seed their Random with the coordinator's seed 0).
"""

from __future__ import annotations

import pytest

from daemons.coordinator.testing import Client, StatePublisher, node_state, running_coordinator
from daemons.core.messages import Placement
from daemons.gossip.config import GossipConfig
from daemons.policy import PlacementRequest
from daemons.sim.clock import Clock
from daemons.sim.coordinator import Ask, CoordinatorSettings, Costs, SimCoordinator

STATES = [node_state("n0", ready=["m1"], queue=2), node_state("n1", ready=["m1", "m2"]),
          node_state("n2", ready=["m3"], queue=1), node_state("n3")]
MODELS = ["m1", "m2", "m3", "m1", "m1", "m2", "m3", "m3", "m1", "m2"] * 3
POLICIES = ["affinity-score", "least-loaded", "random", "round-robin", "startup-optimal"]


def real_placements(policy: str) -> list[tuple[str, str]]:
    with running_coordinator(policy=policy, dead_after=60) as coord, \
            StatePublisher(coord.state_bind) as pub, Client(coord.bind) as client:
        client.wait_for_nodes({s.node for s in STATES}, publish=lambda: [pub.publish(s) for s in STATES])
        out = []
        for i, model in enumerate(MODELS):
            body = client.schedule(f"r{i}", model).body
            assert isinstance(body, Placement), body
            out.append((body.node, body.action))
        return out


def simulated_placements(policy: str) -> list[tuple[str, str]]:
    clock = Clock(GossipConfig.preset("lan"), 0, (0.0005, 0.0005))
    coord = SimCoordinator(CoordinatorSettings(policy, dead_after_s=60), clock, Costs(0.0, 0.0),
                           lambda *_: None)
    coord.start()
    for state in STATES:
        coord.on_state(state)
    clock.run_until(0.5)
    out: list[tuple[str, str]] = []
    for i, model in enumerate(MODELS):  # one at a time, each answered before the next, as the client asks
        # Client.schedule's request: 100 prompt tokens, 50 new, priority 0.
        coord.on_schedule(Ask(f"r{i}", PlacementRequest(model, 100, 50), 0.0,
                              lambda body: out.append((body.node, body.action))))
        clock.run_until(clock.now + 0.001)
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_simulated_and_real_coordinators_place_identically(policy: str) -> None:
    simulated = simulated_placements(policy)
    assert len(simulated) == len(MODELS)
    assert simulated == real_placements(policy)


def test_the_comparison_can_fail() -> None:
    # Different policies place differently on this view: so equality above is not vacuous.
    assert simulated_placements("round-robin") != simulated_placements("affinity-score")
