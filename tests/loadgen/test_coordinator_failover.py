"""The load generator's side of coordinator failover and of dead links: which coordinator it
asks, rerouting on refusals and stale epochs, and retries when a connection drops."""

from __future__ import annotations

from daemons.bus.envelope import Envelope
from daemons.core.messages import Error, Placement
from daemons.loadgen.coordinators import CoordinatorSet
from daemons.loadgen.recorder import REROUTE_BACKOFF_S, Recorder, RequestRecord
from daemons.loadgen.workload import PlannedRequest
from daemons.rundir.requests import ERROR

PRIMARY, STANDBY = "tcp://10.0.0.5:5555", "tcp://10.0.0.6:5555"


def test_a_silent_coordinator_is_suspected_and_the_other_asked() -> None:
    pair = CoordinatorSet((PRIMARY, STANDBY), suspect_s=10.0)
    assert pair.active == PRIMARY
    pair.timed_out(PRIMARY, now=1.0)
    assert pair.active == STANDBY
    pair.refused(STANDBY, now=2.0)  # passive, but the primary is suspected: keep asking the standby
    assert pair.active == STANDBY
    pair.refused(STANDBY, now=11.5)  # suspicion over: try the primary again
    assert pair.active == PRIMARY


def test_placements_follow_the_newest_epoch() -> None:
    pair = CoordinatorSet((PRIMARY, STANDBY))
    assert pair.placed(STANDBY, 2) and pair.active == STANDBY
    assert not pair.placed(PRIMARY, 1)  # a deposed primary's placement is not followed
    assert pair.active == STANDBY and pair.epoch == 2
    alone = CoordinatorSet((PRIMARY,))
    alone.timed_out(PRIMARY, 1.0)
    assert alone.active == PRIMARY  # nobody else to ask


def recorder(n: int = 1) -> Recorder:
    schedule = [PlannedRequest(f"r{i}", 0.0, "m", 10, 5) for i in range(n)]
    return Recorder(schedule, timeout_s=60, mode="centralized", retries=1, attempt_timeout_s=0,
                    coordinators=CoordinatorSet((PRIMARY, STANDBY)), coordinator_timeout_s=2.0,
                    coordinator_retries=3)


def sent(rec: Recorder, to: str = PRIMARY) -> RequestRecord:
    r = rec.records[0]
    rec.on_sent(r, 0.0, to)
    return r


def placement(epoch: int, sender: str = "coordinator") -> Envelope:
    return Envelope("placement", sender, "r0", Placement("r0", "node-0", "tcp://n0:1", "SERVE", 0, "", 0, epoch))


def test_an_unplaced_request_is_rerouted_to_the_standby_without_using_node_retries() -> None:
    rec = recorder()
    r = sent(rec)
    rec.check_placements(1.9)
    assert rec.retry_due == []
    rec.check_placements(2.0)
    assert rec.retry_due == [r] and rec.coordinators is not None and rec.coordinators.active == STANDBY
    assert (r.reroutes, r.retried) == (1, 0)


def test_not_active_backs_off_and_the_reroutes_are_bounded() -> None:
    rec = recorder()
    r = sent(rec, STANDBY)
    refusal = Envelope("error", "standby", "r0", Error("r0", "not_active", "passive"))
    for n in range(3):
        rec.on_reply(refusal, float(n), STANDBY)
        assert rec.retry_due == []  # waits out its back-off first
        rec.check_placements(n + REROUTE_BACKOFF_S * 2 ** n)
        assert rec.retry_due == [r]
        rec.retry_due.clear()
        rec.on_resent(r, n + 0.9, STANDBY)
    rec.on_reply(refusal, 9.0, STANDBY)
    assert (r.status, r.error) == (ERROR, "not_active")  # the fourth refusal: reroutes used up


def test_a_stale_placement_is_not_followed_and_a_stale_epoch_refusal_reroutes() -> None:
    rec = recorder()
    assert rec.coordinators is not None
    rec.coordinators.placed(STANDBY, 2)
    r = sent(rec, PRIMARY)
    assert rec.on_reply(placement(1), 0.1, PRIMARY) is None  # from the deposed primary
    assert rec.ignored["stale"] == 1 and rec.retry_due == [r]
    rec.retry_due.clear()
    rec.on_resent(r, 0.2, STANDBY)
    assert rec.on_reply(placement(2, "standby"), 0.3, STANDBY) is not None
    assert (r.coordinator, r.epoch, r.node_endpoint) == ("standby", 2, "tcp://n0:1")
    # the node knows a newer epoch still: ask again, without blaming the node
    rec.on_reply(Envelope("error", "node-0", "r0", Error("r0", "stale_epoch", "old", "node-0")), 0.4, "tcp://n0:1")
    assert rec.retry_due == [r] and r.failed_nodes == [] and r.retried == 0


def test_a_dropped_link_retries_what_waited_on_it_at_once() -> None:
    rec = recorder(2)
    a, b = rec.records
    rec.on_sent(a, 0.0, PRIMARY)
    rec.on_sent(b, 0.0, PRIMARY)
    rec.on_reply(placement(1), 0.1, PRIMARY)  # a is placed on node-0; b still waits for the primary
    rec.link_lost("tcp://n0:1", 0.5)
    assert rec.retry_due == [a] and a.failed_nodes == ["node-0"] and a.retried == 1
    rec.retry_due.clear()
    rec.link_lost(PRIMARY, 0.6)  # the primary died: b is asked of the standby now, not after 2 s
    assert rec.retry_due == [b] and b.reroutes == 1
    assert rec.coordinators is not None and rec.coordinators.active == STANDBY
