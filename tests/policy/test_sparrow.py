"""Sparrow's pure part: whom a peer probes, what the first answer decides, when a probed peer answers."""

from __future__ import annotations

from random import Random

import pytest

from daemons.policy import Decision, NodeView, PlacementRequest, Refusal, get_policy
from daemons.policy.peer import QUEUE_CAP, D, power_of_d
from daemons.policy.sparrow import PROBE_TIMEOUT_S, PROBE_WAIT_S, ProbeRound, Sparrow
from tests.policy.helpers import node, ready, view

REQ = PlacementRequest("m1", 100, 50)
SPARROW = Sparrow(fallback=power_of_d, d=2, slots=4)


def test_the_gossip_registry_holds_a_sparrow_that_falls_back_to_power_of_d() -> None:
    policy = get_policy("sparrow", "gossip")
    assert isinstance(policy, Sparrow)
    assert (policy.d, policy.slots, policy.timeout_s, policy.hold_s) == (D, QUEUE_CAP, PROBE_TIMEOUT_S, PROBE_WAIT_S)
    v = view(node("a", ready("m1"), queue=3), node("b", ready("m1")), node("c"))
    for seed in range(5):  # called as a plain peer policy, it is its fallback
        assert policy(v, REQ, Random(seed), "c") == power_of_d(v, REQ, Random(seed), "c")


def test_probes_go_to_holders_of_the_model_only() -> None:
    v = view(node("a", ready("m1")), node("b", ready("m1")), node("c"), node("d"))
    for seed in range(20):
        round_ = SPARROW.probes(v, REQ, Random(seed), "me")
        assert round_ is not None and {o.node.name for o in round_.options} == {"a", "b"}
        assert {o.action for o in round_.options} == {"SERVE"}
        assert round_.endpoints == [o.node.endpoint for o in round_.options]
        assert round_.timeout_s == PROBE_TIMEOUT_S


def test_without_holders_it_probes_nodes_that_can_load_the_model() -> None:
    v = view(node("a"), node("full", extra_used_gib=75), node("b"), node("dead", alive=False))
    seen: set[str] = set()
    for seed in range(20):
        round_ = SPARROW.probes(v, REQ, Random(seed), "me")
        assert round_ is not None and len(round_.options) == 2
        assert {o.action for o in round_.options} == {"COLD_START"}
        seen |= {o.node.name for o in round_.options}
    assert seen == {"a", "b"}


def test_d_candidates_are_sampled_among_all_and_the_prober_never_probes_itself() -> None:
    v = view(*(node(f"n{i}", ready("m1")) for i in range(4)))
    sizes = set()
    for seed in range(50):
        round_ = SPARROW.probes(v, REQ, Random(seed), "n0")
        assert round_ is not None and "n0" not in {o.node.name for o in round_.options}
        sizes.add(len(round_.options))
    assert sizes == {1, 2}  # drawn as one of the d, the prober is dropped: one probe fewer


@pytest.mark.parametrize("nodes", [[node("me", ready("m1"))], [node("x", extra_used_gib=75)], []])
def test_nobody_to_probe_means_no_round(nodes: list[NodeView]) -> None:
    assert SPARROW.probes(view(*nodes), REQ, Random(0), "me") is None


def test_the_first_to_answer_wins() -> None:
    v = view(node("a", ready("m1"), queue=9), node("b", ready("m1")))
    round_ = SPARROW.probes(v, REQ, Random(0), "me")
    assert round_ is not None
    decision = round_.choose("tcp://a:5560")
    assert isinstance(decision, Decision)  # the longer queue wins if it answers first: late binding
    assert (decision.node, decision.endpoint, decision.action) == ("a", "tcp://a:5560", "SERVE")
    assert decision.reason == "sparrow: first of 2 probed peers to answer"


def test_no_answer_or_a_stranger_answering_falls_back() -> None:
    round_ = SPARROW.probes(view(node("a", ready("m1"))), REQ, Random(0), "me")
    assert round_ is not None
    assert round_.choose(None) is None
    assert round_.choose("tcp://stranger:5560") is None
    assert ProbeRound((), 0.25).choose("tcp://a:5560") is None


def test_the_fallback_refuses_what_nobody_can_take() -> None:
    v = view(node("full", extra_used_gib=75))
    assert SPARROW.probes(v, REQ, Random(0), "me") is None
    assert isinstance(SPARROW(v, REQ, Random(0), "me"), Refusal)


def test_a_probed_peer_answers_at_once_only_below_its_slots() -> None:
    assert [SPARROW.free_slot(load) for load in range(6)] == [True, True, True, True, False, False]
