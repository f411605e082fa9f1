"""Sparrow's pure part: whom a peer probes, what the first answer decides, when a probed peer answers."""

from __future__ import annotations

from random import Random

import pytest

from daemons.core.messages import ModelState, NodeState, Probe, ProbeReply
from daemons.policy import Decision, NodeView, PlacementRequest, Refusal, get_policy
from daemons.policy.peer import QUEUE_CAP, D, power_of_d
from daemons.policy.sparrow import PROBE_TIMEOUT_S, PROBE_WAIT_S, Move, ProbeRound, Sparrow, probe_reply
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


def test_a_race_is_won_by_the_first_reply_in_time_only() -> None:
    round_ = SPARROW.probes(view(node("a", ready("m1")), node("b", ready("m1"))), REQ, Random(0), "me")
    assert round_ is not None
    race = round_.start(10.0)
    assert race.deadline == 10.0 + PROBE_TIMEOUT_S
    assert race.reply("tcp://b:5560", 10.1) and not race.reply("tcp://a:5560", 10.11)  # the second is late
    decision = race.decision()
    assert isinstance(decision, Decision) and decision.node == "b"
    late = round_.start(10.0)
    assert not late.reply("tcp://a:5560", 10.0 + PROBE_TIMEOUT_S + 1e-6)  # after the deadline: no winner
    assert late.decision() is None  # the prober falls back


def test_a_held_probe_is_answered_once_a_slot_frees_or_given_up_at_its_deadline() -> None:
    hold = SPARROW.hold(5.0)
    assert hold.deadline == 5.0 + PROBE_WAIT_S
    assert hold.step(SPARROW.slots - 1, 5.0) is Move.ANSWER
    assert hold.step(SPARROW.slots, 5.1) is Move.WAIT
    assert hold.step(SPARROW.slots - 1, 5.2) is Move.ANSWER  # a request finished meanwhile
    assert hold.step(SPARROW.slots, hold.deadline) is Move.GIVE_UP


def test_the_reply_carries_the_probed_peers_load_and_whether_the_model_is_ready() -> None:
    state = NodeState("b", "tcp://b:5560", 1, 3, [], [ModelState("m1", "ready"), ModelState("m2", "loading")], 0,
                      in_flight=2)
    assert probe_reply(Probe("r1", "m1"), state) == ProbeReply("r1", "b", 2, True)
    assert probe_reply(Probe("r2", "m2"), state) == ProbeReply("r2", "b", 2, False)
