"""The authorisation rule table (daemons/bus/authz.py) and the log rate limit, as pure functions."""

from __future__ import annotations

import pytest

from daemons.bus.authz import Identity, TokenBucket, check, parse_user_id, user_id
from daemons.coordinator.testing import node_state
from daemons.core.messages import EpochNotice, Infer, Schedule, WitnessQuery

NODE0 = Identity("node-0", frozenset({"node"}))
COORD = Identity("coordinator", frozenset({"coordinator"}))
LOADGEN = Identity("loadgen", frozenset({"loadgen"}))
NOBODY = Identity("old-key", frozenset())


def test_user_id_round_trip() -> None:
    assert parse_user_id(user_id("gpu-1", {"node", "loadgen"})) == Identity("gpu-1", frozenset({"node", "loadgen"}))
    assert parse_user_id(user_id("x", set())) == Identity("x", frozenset())
    assert parse_user_id(None) is None
    assert parse_user_id("K3y+z85garbage") is None  # pyzmq's default User-Id (a z85 key) is not an identity
    assert parse_user_id("root,node:gpu-1") == Identity("gpu-1", frozenset({"node"}))  # unknown roles ignored


def test_a_node_publishes_state_for_itself_only() -> None:
    assert check(NODE0, "state", "node-0", node_state("node-0")) is None
    assert "about 'node-1'" in str(check(NODE0, "state", "node-0", node_state("node-1")))
    assert "as 'node-1'" in str(check(NODE0, "state", "node-1", node_state("node-1")))
    assert "may not send 'state'" in str(check(LOADGEN, "state", "loadgen", node_state("loadgen")))
    assert check(NOBODY, "state", "old-key") is not None


@pytest.mark.parametrize("mtype, body", [("witness_query", WitnessQuery("coordinator", 3, "tcp://127.0.0.1:1")),
                                         ("epoch_notice", EpochNotice("coordinator", 3))])
def test_only_coordinators_send_epochs_and_witness_queries(mtype: str, body: object) -> None:
    assert check(COORD, mtype, "coordinator", body) is None
    assert check(NODE0, mtype, "node-0", body) is not None
    assert check(LOADGEN, mtype, "coordinator", body) is not None
    other = Identity("standby", frozenset({"coordinator"}))
    assert "about 'coordinator'" in str(check(other, mtype, "standby", body))


def test_requests_and_status() -> None:
    infer = Infer("r-1", "m", "p", 4)
    assert check(LOADGEN, "schedule", "loadgen-x", Schedule("r-1", "m", 1, 4)) is None  # a loadgen's name is free
    assert check(NODE0, "schedule", "node-0", Schedule("r-1", "m", 1, 4)) is None  # a hybrid peer refers a cold start
    assert check(COORD, "schedule", "coordinator", Schedule("r-1", "m", 1, 4)) is not None
    assert check(NODE0, "infer", "node-0", infer) is None  # a gossip peer forwards
    assert check(COORD, "infer", "coordinator", infer) is not None
    assert check(NOBODY, "status_request", "anyone") is None  # a role-less key may only ask for status
    assert check(NOBODY, "infer", "anyone", infer) is not None


def test_gossip_sender_is_the_authenticated_peer() -> None:
    assert check(NODE0, "gossip", "node-0") is None
    assert check(NODE0, "gossip", "node-1") is not None
    assert check(Identity("node-0", frozenset({"loadgen"})), "gossip", "node-0") is not None


def test_from_a_server_we_connected_to() -> None:
    assert check(None, "event", "coordinator") is None
    assert check(None, "state", "node-0", node_state("node-0")) is not None


def test_token_bucket_says_how_many_were_suppressed() -> None:
    bucket = TokenBucket(burst=2, every_s=10.0)
    assert [bucket.take("a", 0.0) for _ in range(5)] == [0, 0, None, None, None]
    assert bucket.take("b", 0.0) == 0  # per cause
    assert bucket.take("a", 10.0) == 3  # one token back after every_s: the line says 3 were suppressed
    assert bucket.take("a", 10.0) is None


def test_a_peer_reports_its_own_verdicts_only() -> None:
    from daemons.core.messages import ClusterEvent

    own = ClusterEvent("dead", "node-1", "by=node-0;incarnation=3")
    assert check(NODE0, "event", "node-0", own) is None
    assert check(NODE0, "event", "node-0", ClusterEvent("dead", "node-1", "by=node-2;incarnation=3")) is not None
    assert check(NODE0, "event", "node-0", ClusterEvent("node_dead", "node-1", "x")) is not None
    assert check(LOADGEN, "event", "node-0", own) is not None
