"""Coordinator failover: the Binary Star state machine, epochs on disk, and a real pair of
coordinator processes with real nodes as witnesses (kill, pause, a witness that says no)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from daemons.coordinator.config import CoordinatorConfig
from daemons.coordinator.epoch import EpochStore
from daemons.coordinator.failover import BinaryStar, Failover, State, VoteRound, next_epoch
from daemons.coordinator.testing import Client, CoordinatorProcess, coordinator_process, running_pair
from daemons.core.errors import ConfigError
from daemons.core.messages import Error, Infer, Placement
from daemons.core.process import free_endpoint
from daemons.node.testing import NodeProcess, running_node

SMALL = "facebook/opt-125m"
FAILOVER_S = 2.0
# Takeover bound once the primary is gone: silence (failover_after) + the vote (witness_timeout
# 1.5 s) + one beat and one loop tick of slack; asked every 0.2 s below.
TAKEOVER_BOUND_S = FAILOVER_S + 1.5 + 1.5


# ----- the state machine ----------------------------------------------------------------
def test_epochs_have_the_role_parity_so_two_coordinators_never_share_one() -> None:
    assert [next_epoch("primary", s) for s in (0, 1, 2, 3)] == [1, 3, 3, 5]
    assert [next_epoch("backup", s) for s in (0, 1, 2, 3)] == [2, 2, 4, 4]


def test_normal_start_primary_active_backup_passive() -> None:
    primary = BinaryStar("primary", 5.0, 0, started_at=0.0)
    backup = BinaryStar("backup", 5.0, 0, started_at=0.0)
    assert not primary.active and not primary.should_vote(1.0)  # undecided, peer not silent yet
    assert backup.on_peer("primary", 0, 0.5) is None  # both undecided: wait
    assert primary.on_peer("backup", 0, 0.6) is State.ACTIVE and primary.serving_epoch == 1
    assert backup.on_peer("active", 1, 1.0) is State.PASSIVE
    assert primary.active and not primary.should_vote(100.0)  # an active one never votes
    assert not backup.active and not backup.should_vote(1.2)  # peer heard 0.2 s ago


def test_passive_backup_votes_only_after_silence_and_takes_the_next_even_epoch() -> None:
    backup = BinaryStar("backup", 5.0, 0, started_at=0.0)
    backup.on_peer("active", 1, 1.0)
    assert not backup.should_vote(5.9)
    assert backup.should_vote(6.0)
    assert backup.on_vote(False, 1, 6.5, "0 of 2") is None and not backup.active
    assert backup.on_vote(True, 1, 6.5, "2 of 2") is State.ACTIVE
    assert backup.serving_epoch == 2
    # a vote granted after the peer spoke again is not acted on
    late = BinaryStar("backup", 5.0, 0, started_at=0.0)
    late.on_peer("active", 1, 1.0)
    late.on_peer("active", 1, 6.2)
    assert late.on_vote(True, 1, 6.5, "2 of 2") is None


def test_a_deposed_primary_steps_down_when_it_hears_the_newer_epoch() -> None:
    primary = BinaryStar("primary", 5.0, 0, started_at=0.0)
    primary.on_peer("backup", 0, 0.1)
    assert primary.active and primary.serving_epoch == 1
    assert primary.on_peer("active", 2, 20.0) is State.PASSIVE  # paused meanwhile; the backup took over
    assert primary.epoch == 2 and not primary.active
    # an older active peer does not depose a newer one
    backup = BinaryStar("backup", 5.0, 0, started_at=0.0)
    backup.on_vote(True, 1, 6.0, "")
    assert backup.on_peer("active", 1, 6.1) is None and backup.active


def test_passive_takes_over_when_the_peer_restarts_undecided() -> None:
    backup = BinaryStar("backup", 5.0, 0, started_at=0.0)
    backup.on_peer("active", 1, 1.0)
    assert backup.on_peer("primary", 1, 2.0) is State.ACTIVE and backup.serving_epoch == 2
    restarted = BinaryStar("primary", 5.0, 1, started_at=2.0)  # its epoch file said 1
    assert restarted.on_peer("active", 2, 2.5) is State.PASSIVE  # fail-back is manual


def test_vote_needs_a_strict_majority_of_the_nodes_asked() -> None:
    vote = VoteRound(frozenset({"a", "b", "c"}), deadline=10.0)
    vote.add("a", True, 3)
    vote.add("a", True, 3)  # a repeated answer counts once
    vote.add("x", True, 0)  # nobody asked x
    assert vote.outcome(1.0) is None
    vote.add("b", True, 1)
    assert vote.outcome(1.0) is True and vote.epoch == 3
    split = VoteRound(frozenset({"a", "b"}), deadline=10.0)
    split.add("a", True, 0)
    split.add("b", False, 0)
    assert split.outcome(1.0) is False  # 1 of 2 is no majority
    assert VoteRound(frozenset(), deadline=10.0).outcome(0.0) is False  # no witnesses, no takeover
    slow = VoteRound(frozenset({"a", "b", "c"}), deadline=2.0)
    slow.add("a", True, 0)
    assert slow.outcome(1.0) is None and slow.outcome(2.0) is False


def test_the_failover_loop_asks_once_waits_after_a_refusal_and_takes_over_on_a_grant() -> None:
    # The loop server.py and the simulator (daemons/sim/coordinator.py) both run.
    loop = Failover(BinaryStar("backup", 3.0, 1, started_at=0.0), "standby", "tcp://primary", 1.5, 1.0)
    assert loop.heard("active", 1, 0.5) == (State.PASSIVE, ("coordinator_passive", "standby",
                                                            "epoch=1;peer active in epoch 1"))
    assert loop.vote_due(["n0", "n1", "n2"], 3.4) is None  # heard 2.9 s ago: not silent yet
    due = loop.vote_due(["n0", "n1", "n2"], 3.5)
    assert due is not None
    query, (kind, _, detail) = due
    assert (query.epoch, query.peer, query.probe_s, kind) == (2, "tcp://primary", 0.9, "failover_vote")
    assert "asking 3 witnesses for epoch 2" in detail
    assert loop.vote_due(["n0"], 3.6) is None  # one vote at a time
    loop.voted("n0", False, 1)
    loop.voted("n1", False, 1)
    assert loop.decided(3.7) == (None, ("failover_refused", "standby",
                                        "0 of 3 cannot reach it, 2 can: the peer is alive for the majority"))
    assert loop.vote_due(["n0"], 3.7 + 1.0) is None  # a refused vote's pause: timeout + one beat
    assert loop.vote_due(["n0", "n1"], 3.5 + 1.5 + 1.0) is not None
    loop.voted("n0", True, 1)
    loop.voted("n1", True, 1)
    changed, (kind, target, _) = loop.decided(6.1) or (None, ("", "", ""))
    assert (changed, kind, target, loop.star.serving_epoch) == (State.ACTIVE, "coordinator_active", "standby", 2)
    assert loop.refusal().startswith("coordinator standby is active")


def test_epoch_store_survives_and_rejects_garbage(tmp_path: Path) -> None:
    store = EpochStore(tmp_path / "state" / "epoch")
    assert store.read() == 0
    store.write(7)
    assert EpochStore(tmp_path / "state" / "epoch").read() == 7
    (tmp_path / "state" / "epoch").write_text("seven\n")
    with pytest.raises(ConfigError, match="not an epoch number"):
        store.read()


def test_failover_config_names_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="--peer"):
        CoordinatorConfig(role="backup")
    with pytest.raises(ConfigError, match="role 'leader' is unknown"):
        CoordinatorConfig(role="leader")
    with pytest.raises(ConfigError, match="two heartbeats"):
        CoordinatorConfig(failover_after_s=1.0, heartbeat_s=1.0)


# ----- real processes ---------------------------------------------------------------------
@contextmanager
def pair_with_nodes(tmp: Path, nodes: int = 2, **flags: object) -> Iterator[
        tuple[CoordinatorProcess, CoordinatorProcess, list[NodeProcess]]]:
    with ExitStack() as stack:
        primary, backup = stack.enter_context(running_pair(tmp, failover_after=FAILOVER_S, **flags))
        procs = [stack.enter_context(running_node(tmp, f"node-{i}", models=[SMALL], checkpoint_tier="gpu",
                                                  publish_to=[primary.state_bind, backup.state_bind]))
                 for i in range(nodes)]
        names = {f"node-{i}" for i in range(nodes)}
        for coord in (primary, backup):
            with Client(coord.bind) as client:
                client.wait_for_nodes(names, timeout_s=20)
        wait_for(lambda: primary.ha()["state"] == "active" and backup.ha()["state"] == "passive", 10)
        yield primary, backup, procs


def wait_for(check: object, timeout_s: float) -> float:
    """Poll `check()` until true; the seconds it took."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - start < timeout_s, f"not true within {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - start


def ask_until_placed(coord: CoordinatorProcess, timeout_s: float) -> tuple[Placement, float]:
    """Ask `coord` for placements every 0.2 s until it places one."""
    start = time.monotonic()
    with Client(coord.bind) as client:
        while True:
            answer = client.schedule(f"ask-{time.monotonic()}", SMALL, timeout_s=1.0).body
            if isinstance(answer, Placement):
                return answer, time.monotonic() - start
            assert isinstance(answer, Error) and answer.code == "not_active", answer
            assert time.monotonic() - start < timeout_s, f"no takeover within {timeout_s} s"
            time.sleep(0.2)


def node_epoch(node: NodeProcess) -> int:
    with Client(node.bind) as client:
        return int(client.status(2.0).info["epoch"])


@pytest.mark.slow
def test_backup_takes_over_from_a_killed_primary_and_fences_its_epoch(tmp_path: Path) -> None:
    with pair_with_nodes(tmp_path) as (primary, backup, nodes):
        first, _ = ask_until_placed(primary, 5)
        assert first.epoch == 1
        with Client(backup.bind) as client:
            refused = client.schedule("to-passive", SMALL).body
        assert isinstance(refused, Error) and refused.code == "not_active"
        primary.proc.kill()
        killed = time.monotonic()
        placed, _ = ask_until_placed(backup, 15)
        took = time.monotonic() - killed
        assert placed.epoch == 2, placed
        assert FAILOVER_S <= took <= TAKEOVER_BOUND_S, took
        assert (tmp_path / "standby.epoch").read_text().strip() == "2"  # durable before it answered
        wait_for(lambda: all(node_epoch(n) == 2 for n in nodes), 3)  # the EpochNotice reached them
        # A placement of the old epoch is refused by the node, not run.
        with Client(placed.endpoint) as to_node:
            to_node.send(Infer("old-epoch", SMALL, "hello " * 4, 2, "SERVE", epoch=1), "old-epoch")
            stale = to_node.recv(5).body
        assert isinstance(stale, Error) and stale.code == "stale_epoch", stale
        assert "coordinator_active" in backup.log() or backup.ha()["state"] == "active"


@pytest.mark.slow
def test_a_paused_primary_is_deposed_and_stays_passive_after_it_resumes(tmp_path: Path) -> None:
    with pair_with_nodes(tmp_path) as (primary, backup, _):
        primary.proc.send_signal(signal.SIGSTOP)
        try:
            placed, _ = ask_until_placed(backup, 15)
        finally:
            primary.proc.send_signal(signal.SIGCONT)
        assert placed.epoch == 2
        wait_for(lambda: primary.ha()["state"] == "passive", 3)
        assert primary.ha()["epoch"] == 1  # it never served in the backup's epoch
        with Client(primary.bind) as client:
            answer = client.schedule("after-resume", SMALL).body
        assert isinstance(answer, Error) and answer.code == "not_active"  # no second active coordinator
        assert backup.ha()["state"] == "active"


@pytest.mark.slow
def test_witnesses_refuse_a_takeover_while_the_primary_answers_them(tmp_path: Path) -> None:
    """The backup cannot hear the primary (its peer_events points nowhere), but the nodes can
    reach the primary: the vote fails and the backup stays passive (no split brain)."""
    with running_pair(tmp_path, failover_after=FAILOVER_S) as (primary, _), \
            running_node(tmp_path, "node-0", models=[SMALL], checkpoint_tier="gpu", publish_to=[primary.state_bind]):
        with Client(primary.bind) as client:
            client.wait_for_nodes({"node-0"}, timeout_s=20)
        wait_for(lambda: primary.ha()["state"] == "active", 10)
        # A backup that hears nothing from the primary but knows its request endpoint.
        flags = {"role": "backup", "name": "deaf", "peer": primary.bind, "peer_events": free_endpoint(),
                 "epoch_file": tmp_path / "deaf.epoch", "failover_after": FAILOVER_S}
        with coordinator_process(tmp_path, [], flags) as lonely, \
                running_node(tmp_path, "node-1", models=[SMALL], checkpoint_tier="gpu",
                             publish_to=[primary.state_bind, lonely.state_bind]):
            lonely.wait_ready()
            with Client(lonely.bind) as client:
                client.wait_for_nodes({"node-1"}, timeout_s=20)
                deadline = time.monotonic() + FAILOVER_S + 4
                while time.monotonic() < deadline:
                    answer = client.schedule(f"x-{time.monotonic()}", SMALL).body
                    assert isinstance(answer, Error) and answer.code == "not_active", answer
                    time.sleep(0.2)
            assert "failover_refused" in lonely.log(), lonely.log()[-2000:]
            assert lonely.ha()["state"] != "active" and primary.ha()["state"] == "active"
