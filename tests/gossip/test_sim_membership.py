"""The Memberlist state machine on the simulated network: SWIM + Lifeguard behaviour."""

from __future__ import annotations

import dataclasses

import pytest

from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import EventKind
from daemons.gossip.messages import Status
from daemons.gossip.simnet import SimNetwork
from tests.gossip.helpers import ALL_KNOW_P99, joined_net, record, sees_all_alive


def test_join_through_one_seed_reaches_full_membership_and_records() -> None:
    net = joined_net(16, wire=True)  # wire=True: every frame goes through encode/decode
    assert net.now < 2.0
    assert sees_all_alive(net)

    def all_records() -> bool:
        return all(m.record is not None for o in net.up_nodes() for m in net.view(o).values())

    assert net.run_for(3.0, until=all_records)
    for obs in net.up_nodes():
        view = net.view(obs)
        assert len(view) == 16
        assert all(m.record is not None and m.record.ver == 1 for m in view.values())
    joined = [e for e in net.events if e.event.kind is EventKind.JOINED]
    assert len(joined) == 16 * 15  # every member announced once to every other


def test_join_retries_until_the_seed_exists() -> None:
    net = SimNetwork(GossipConfig.lan(), seed=3)
    net.add_node("a")
    net.add_node("b")
    net.kill("a")  # the seed is down when b joins
    net.join("b", ["a"])
    net.run_for(3.0)
    assert net.ml("b").num_live == 1
    net.restart("a", seeds=[])
    assert net.run_for(10.0, until=net.fully_joined)


@pytest.mark.parametrize(("n", "seed"), [(8, 1), (16, 2), (16, 3), (32, 4)])
def test_killed_member_is_declared_dead_by_all_within_bounds(n: int, seed: int) -> None:
    net = joined_net(n, seed=seed, bootstrap=True)
    net.run_for(5.0)
    net.kill("n3")
    t0 = net.now
    bound = 1.5 * ALL_KNOW_P99[n]
    assert net.run_until(t0 + bound, until=lambda: net.all_see("n3", Status.DEAD)), (
        f"not all saw n3 dead within {bound:.1f} s"
    )
    # No verdict before the shortest possible suspicion timeout.
    first = min(e.time for e in net.events if e.event.kind is EventKind.DEAD and e.event.node == "n3")
    assert first - t0 >= net.config.suspicion_min(n)
    assert not [e for e in net.events if e.event.kind is EventKind.DEAD and e.event.node != "n3"]


def test_short_pause_is_suspected_then_refuted_never_dead() -> None:
    net = joined_net(8, seed=5)
    net.run_for(3.0)
    cfg = net.config
    net.pause("n2")
    t0 = net.now

    def suspected() -> bool:
        return any(e.event.kind is EventKind.SUSPECT and e.event.node == "n2" for e in net.events)

    # Paused until someone suspects it, then 1 s more: longer than the probe timeout, and
    # resumed long before the suspicion can expire (min 4 s at N = 8).
    assert net.run_until(t0 + 10.0, until=suspected, check_every=0.01)
    suspected_at = net.now
    net.run_for(1.0)
    pause = net.now - t0
    assert pause > cfg.probe_timeout
    assert net.now - suspected_at < cfg.suspicion_min(8)
    net.resume("n2")
    assert net.run_for(10.0, until=lambda: net.all_see("n2", Status.ALIVE))
    net.run_for(30.0)
    assert not [e for e in net.events if e.event.kind is EventKind.DEAD], "a paused member was declared dead"
    assert net.ml("n2").incarnation >= 1  # it refuted with a higher incarnation
    refuted = [e for e in net.events if e.event.kind is EventKind.ALIVE_AGAIN and e.event.node == "n2"]
    assert refuted and all(e.time > t0 + pause for e in refuted)


def test_long_pause_is_declared_dead_then_refutes_when_resumed() -> None:
    net = joined_net(8, seed=6)
    net.run_for(3.0)
    net.pause("n2")
    t0 = net.now
    assert net.run_until(t0 + 40.0, until=lambda: net.all_see("n2", Status.DEAD))
    dead_inc = net.view("n0")["n2"].inc
    net.run_for(2.0)
    net.resume("n2")
    assert net.run_for(15.0, until=lambda: net.all_see("n2", Status.ALIVE))
    assert net.ml("n2").incarnation > dead_inc
    assert all(net.view(o)["n2"].inc > dead_inc for o in net.up_nodes() if o != "n2")
    again = {e.observer for e in net.events if e.event.kind is EventKind.ALIVE_AGAIN and e.event.node == "n2"}
    assert again == set(net.up_nodes()) - {"n2"}


def test_restart_with_new_generation_supersedes_old_life() -> None:
    net = joined_net(8, seed=7)
    net.set_record("n4", record(4, q=9))
    net.run_for(3.0)
    net.kill("n4")
    assert net.run_for(40.0, until=lambda: net.all_see("n4", Status.DEAD))
    node = net.restart("n4")
    assert node.ml.generation == 2 and node.ml.incarnation == 0
    assert net.run_for(10.0, until=lambda: net.all_see("n4", Status.ALIVE))

    def has_new_record(obs: str) -> bool:
        rec = net.view(obs)["n4"].record
        return rec is not None and rec.gen == 2

    assert net.run_for(5.0, until=lambda: all(has_new_record(o) for o in net.up_nodes()))
    for obs in net.up_nodes():
        if obs == "n4":
            continue
        info = net.view(obs)["n4"]
        assert info.gen == 2
        assert info.record is not None and info.record.gen == 2 and info.record.ver == 1
    rejoined = [e for e in net.events if e.event.kind is EventKind.JOINED and e.event.restarted]
    assert {e.observer for e in rejoined if e.event.node == "n4"} == set(net.up_nodes()) - {"n4"}


def test_quick_restart_before_detection_is_a_new_generation_not_a_death() -> None:
    net = joined_net(8, seed=8)
    net.kill("n5")
    net.run_for(0.3)
    net.restart("n5")
    assert net.run_for(10.0, until=lambda: all(net.view(o)["n5"].gen == 2 for o in net.up_nodes()))
    net.run_for(30.0)
    assert net.all_see("n5", Status.ALIVE)
    assert not [e for e in net.events if e.event.kind is EventKind.DEAD]


def test_graceful_leave_is_seen_as_left() -> None:
    net = joined_net(8, seed=9)
    net.leave("n6")
    # Gossip tells nearly everyone at once; push/pull catches any member it missed.
    assert net.run_for(20.0, until=lambda: net.all_see("n6", Status.LEFT))
    net.kill("n6")
    net.run_for(20.0)
    assert not [e for e in net.events if e.event.kind is EventKind.DEAD]


def test_dead_members_are_reaped_and_stale_gossip_cannot_resurrect_them() -> None:
    cfg = dataclasses.replace(GossipConfig.lan(), dead_reap_time=10.0)
    net = joined_net(6, cfg, seed=10)
    net.kill("n1")
    assert net.run_for(40.0, until=lambda: net.all_see("n1", Status.DEAD))
    assert net.run_for(15.0, until=lambda: all(net.status(o, "n1") is None for o in net.up_nodes()))
    reaped = {e.observer for e in net.events if e.event.kind is EventKind.REAPED}
    assert reaped == set(net.up_nodes())
    net.run_for(20.0)
    assert all(net.status(o, "n1") is None for o in net.up_nodes())


def test_same_seed_same_trace() -> None:
    def trace(seed: int) -> list[tuple[float, str, str, str]]:
        net = joined_net(8, seed=seed)
        net.kill("n3")
        net.run_for(20.0)
        return [(round(e.time, 9), e.observer, e.event.kind.value, e.event.node) for e in net.events]

    assert trace(11) == trace(11)
    assert trace(11) != trace(12)


def test_lossy_network_no_false_positives() -> None:
    net = joined_net(16, seed=12, loss=0.05, bootstrap=True)
    net.run_for(120.0)
    assert not [e for e in net.events if e.event.kind is EventKind.DEAD]
    # Loss causes passing suspicions, each refuted; once the loss stops all settle alive.
    net.loss = 0.0
    assert net.run_for(10.0, until=lambda: sees_all_alive(net))


def test_isolated_observer_raises_its_local_health() -> None:
    net = joined_net(8, seed=13)
    net.partition(["n0"])  # n0 alone: its probes fail and no relay can even nack
    net.run_for(8.0)
    assert net.ml("n0").health >= 3
    assert all(net.ml(f"n{i}").health <= 1 for i in range(1, 8))


def test_partition_then_heal_repaired_by_push_pull() -> None:
    net = joined_net(12, seed=14)
    left = [f"n{i}" for i in range(6)]
    right = [f"n{i}" for i in range(6, 12)]
    net.partition(left, right)
    t0 = net.now

    def split() -> bool:
        return all(net.all_see(r, Status.DEAD, left) for r in right) and all(
            net.all_see(x, Status.DEAD, right) for x in left
        )

    assert net.run_until(t0 + 45.0, until=split)
    # Past gossip-to-the-dead, nothing crosses the split but push/pull's reconnect attempts.
    net.run_until(t0 + 35.0)
    pulls = sum(net.ml(n).stats.push_pulls for n in net.up_nodes())
    net.heal()
    assert net.run_for(60.0, until=lambda: sees_all_alive(net)), "partition not repaired"
    assert sum(net.ml(n).stats.push_pulls for n in net.up_nodes()) > pulls
