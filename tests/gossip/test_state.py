"""The Memberlist state machine driven by hand: message handling and precedence rules."""

from __future__ import annotations

import random

import msgpack
import pytest

from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import EventKind, Memberlist, Outbound
from daemons.gossip.messages import (
    Ack,
    Alive,
    Dead,
    DigestEntry,
    Message,
    Nack,
    Ping,
    PingReq,
    State,
    Status,
    Suspect,
    SyncEntry,
    SyncReq,
    SyncResp,
    item_size,
    item_wire,
)


def machine(node: str = "me", n_peers: int = 3) -> Memberlist:
    ml = Memberlist(node, f"sim://{node}", config=GossipConfig.lan(), generation=5, rng=random.Random(1))
    for i in range(n_peers):
        gossip(ml, Alive(f"p{i}", f"sim://p{i}", 1, 0))
    ml.drain_events()
    return ml


def gossip(ml: Memberlist, *items: Alive | Suspect | Dead | State, now: float = 0.0) -> list[Outbound]:
    return ml.receive(now, "sim://other", Message("other", 0, 0, items[0], tuple(items[1:])))


def status(ml: Memberlist, node: str) -> tuple[Status, int] | None:
    info = ml.member(node)
    return None if info is None else (info.status, info.inc)


def test_ping_is_acked_with_same_seq_and_wrong_target_ignored() -> None:
    ml = machine()
    out = ml.receive(0.0, "sim://p0", Message("p0", 0, 42, Ping("me")))
    assert [(o.addr, type(o.message.body), o.message.seq) for o in out] == [("sim://p0", Ack, 42)]
    assert ml.receive(0.0, "sim://p0", Message("p0", 0, 43, Ping("someone-else"))) == []
    assert ml.stats.ignored_pings == 1


def test_relay_forwards_ack_or_nacks_at_80_percent_of_timeout() -> None:
    ml = machine()
    out = ml.receive(10.0, "sim://p0", Message("p0", 0, 7, PingReq("p1", "sim://p1")))
    assert len(out) == 1 and out[0].addr == "sim://p1" and isinstance(out[0].message.body, Ping)
    relay_seq = out[0].message.seq
    assert ml.next_deadline() <= 10.0 + 0.4 + 1e-9
    assert ml.tick(10.39) == [] or all(not isinstance(o.message.body, Nack) for o in ml.tick(10.39))
    nack = [o for o in ml.tick(10.4) if isinstance(o.message.body, Nack)]
    assert [(o.addr, o.message.seq) for o in nack] == [("sim://p0", 7)]
    late_ack = ml.receive(10.5, "sim://p1", Message("p1", 0, relay_seq, Ack()))
    assert [(o.addr, type(o.message.body), o.message.seq) for o in late_ack] == [("sim://p0", Ack, 7)]


def test_failed_probe_goes_indirect_then_suspects() -> None:
    ml = machine()
    t = ml.next_deadline()
    pings = [o for o in ml.tick(t) if isinstance(o.message.body, Ping)]
    assert len(pings) == 1
    target = pings[0].message.body.target  # type: ignore[union-attr]
    reqs = [o for o in ml.tick(t + 0.5) if isinstance(o.message.body, PingReq)]
    assert len(reqs) == 2 and all(o.message.seq == pings[0].message.seq for o in reqs)
    ml.receive(t + 0.6, reqs[0].addr, Message("x", 0, reqs[0].message.seq, Nack()))
    ml.tick(t + 1.0)
    assert status(ml, target) == (Status.SUSPECT, 0)
    assert ml.health == 1  # two relays asked, one nacked: one point
    ev = ml.drain_events()
    assert [(e.kind, e.node, e.origin) for e in ev] == [(EventKind.SUSPECT, target, "me")]


def test_ack_ends_probe_and_improves_health() -> None:
    ml = machine()
    ml.note_loop_lag(1.0)
    assert ml.health == 1
    t = ml.next_deadline()
    ping = next(o for o in ml.tick(t) if isinstance(o.message.body, Ping))
    ml.receive(t + 0.01, ping.addr, Message("p", 0, ping.message.seq, Ack()))
    assert ml.health == 0
    ml.tick(t + 2.0)
    assert all(m.status is Status.ALIVE for m in ml.members())


def test_precedence_within_a_generation() -> None:
    ml = machine()
    gossip(ml, Suspect("p0", 1, 0, "x"))
    assert status(ml, "p0") == (Status.SUSPECT, 0)  # Suspect beats Alive at equal incarnation
    gossip(ml, Alive("p0", "sim://p0", 1, 0))
    assert status(ml, "p0") == (Status.SUSPECT, 0)  # an equal-incarnation Alive does not refute
    gossip(ml, Alive("p0", "sim://p0", 1, 1))
    assert status(ml, "p0") == (Status.ALIVE, 1)  # a higher incarnation refutes
    gossip(ml, Dead("p0", 1, 1, "x"))
    assert status(ml, "p0") == (Status.SUSPECT, 1)  # a relayed Dead about a live member: suspicion only
    gossip(ml, Dead("p0", 1, 1, "x"))
    assert status(ml, "p0") == (Status.DEAD, 1)  # Dead beats Suspect at its incarnation
    gossip(ml, Suspect("p0", 1, 5, "x"))
    assert status(ml, "p0") == (Status.DEAD, 1)  # the dead are not suspected
    gossip(ml, Alive("p0", "sim://p0", 1, 1))
    assert status(ml, "p0") == (Status.DEAD, 1)
    gossip(ml, Alive("p0", "sim://p0", 1, 2))
    assert status(ml, "p0") == (Status.ALIVE, 2)  # only a higher incarnation comes back
    gossip(ml, Dead("p0", 1, 1, "x"))
    assert status(ml, "p0") == (Status.ALIVE, 2)  # stale death is ignored
    kinds = [e.kind for e in ml.drain_events()]
    assert kinds == [EventKind.SUSPECT, EventKind.ALIVE_AGAIN, EventKind.SUSPECT, EventKind.DEAD,
                     EventKind.ALIVE_AGAIN]


def test_new_generation_beats_everything_and_voids_old_record() -> None:
    ml = machine()
    gossip(ml, State("p1", 1, 9, {"q": 9}))
    gossip(ml, Dead("p1", 1, 7, "x"))
    gossip(ml, State("p1", 2, 1, {"q": 0}))  # arrives before its ALIVE: kept aside
    gossip(ml, Alive("p1", "sim://p1b", 2, 0))
    info = ml.member("p1")
    assert info is not None
    assert (info.status, info.gen, info.inc, info.addr) == (Status.ALIVE, 2, 0, "sim://p1b")
    assert info.record is not None and (info.record.gen, info.record.ver) == (2, 1)
    gossip(ml, Dead("p1", 1, 99, "x"))  # about the old life
    assert status(ml, "p1") == (Status.ALIVE, 0)
    joined = [e for e in ml.drain_events() if e.kind is EventKind.JOINED]
    assert len(joined) == 1 and joined[0].restarted


def test_records_owner_only_and_newest_wins() -> None:
    ml = machine()
    ml.update_local_record(0.0, {"mine": 1})
    gossip(ml, State("me", 5, 99, {"forged": True}))
    assert ml.local_record is not None and ml.local_record.body == {"mine": 1}
    gossip(ml, State("p0", 1, 3, {"v": 3}))
    gossip(ml, State("p0", 1, 2, {"v": 2}))
    info = ml.member("p0", now=4.0)
    assert info is not None and info.record is not None and info.record.body == {"v": 3}
    assert info.record_age == pytest.approx(4.0)
    with pytest.raises(ValueError):
        ml.update_local_record(0.0, {"bad": object()})


def test_refutes_suspicion_about_itself_with_higher_incarnation() -> None:
    ml = machine()
    out = gossip(ml, Suspect("me", 5, 3, "p0"))
    assert ml.incarnation == 4 and ml.health == 1
    assert ml.stats.refutations == 1
    gossip(ml, Dead("me", 4, 50, "p0"))  # about a previous life: ignored
    assert ml.incarnation == 4
    # the refutation rides on the next message
    t = ml.next_deadline()
    sent = [i for o in ml.tick(t) + out for i in (o.message.body, *o.message.piggyback)]
    assert Alive("me", "sim://me", 5, 4) in sent


def test_leave_then_no_refutation() -> None:
    ml = machine()
    out = ml.leave(0.0)
    assert out and all(isinstance(o.message.body, Dead) for o in out)
    gossip(ml, Dead("me", 5, 0, "p0"))
    assert ml.incarnation == 0 and ml.left


def test_sync_exchanges_only_newer_entries() -> None:
    a = machine("a", 0)
    a.update_local_record(0.0, {"a": 1})
    gossip(a, Alive("c", "sim://c", 1, 3), State("c", 1, 2, {"c": 2}))
    digest = (
        DigestEntry("b", 1, 0, Status.ALIVE, 1),
        DigestEntry("c", 1, 3, Status.ALIVE, 2),  # same as a's: nothing to send
        DigestEntry("a", 5, 0, Status.ALIVE, -1),  # b lacks a's record
        DigestEntry("z", 1, 0, Status.DEAD, -1),
    )
    out = a.receive(1.0, "sim://b", Message("b", 0, 0, SyncReq(False, digest)))
    assert len(out) == 1
    resp = out[0].message.body
    assert isinstance(resp, SyncResp) and resp.push_back
    assert [e.node for e in resp.entries] == ["a"]
    assert resp.entries[0].body == {"a": 1}
    # the return leg: b's entries a lacks, and a merged DEAD only as SUSPECT
    back = SyncResp(True, (), (
        SyncEntry("b", "sim://b", 1, 0, Status.ALIVE, 1, {"b": 1}),
        SyncEntry("c", "sim://c", 1, 3, Status.DEAD, 2, None),
    ))
    a.receive(2.0, "sim://b", Message("b", 0, 0, back))
    info_b = a.member("b")
    assert info_b is not None and info_b.record is not None and info_b.record.body == {"b": 1}
    assert status(a, "c") == (Status.SUSPECT, 3)


def test_large_sync_response_is_split_under_frame_limit() -> None:
    from daemons.gossip.messages import encode

    a = machine("a", 0)
    big = {"blob": "x" * 2000}
    for i in range(100):
        gossip(a, Alive(f"n{i}", f"sim://n{i}", 1, 0), State(f"n{i}", 1, 1, big))
    out = a.receive(1.0, "sim://b", Message("b", 0, 0, SyncReq(True, ())))
    assert len(out) > 1
    sizes = [len(encode(o.message)) for o in out]
    assert max(sizes) <= a.config.max_frame_bytes
    assert sum(len(o.message.body.entries) for o in out) == 101  # type: ignore[union-attr]
    assert [o.message.body.push_back for o in out][-1] is True  # type: ignore[union-attr]


def test_time_never_runs_backwards_and_deadline_is_future() -> None:
    ml = machine()
    ml.tick(100.0)
    ml.tick(50.0)
    assert ml.next_deadline() >= 100.0


def test_records_are_what_members_says_of_the_others() -> None:
    ml = machine()
    gossip(ml, State("p1", 1, 3, {"q": 1}), now=1.0)
    gossip(ml, Dead("p2", 1, 0, "p0"), now=2.0)
    want = [(m.node, m.status, m.record, m.record_age) for m in ml.members(5.0) if not m.is_self]
    assert ml.records(5.0) == want
    assert ("p1", Status.ALIVE, ml.member("p1").record, 4.0) in want  # type: ignore[union-attr]


def test_a_states_size_is_measured_once_and_is_its_encoding() -> None:
    state = State("p1", 1, 3, {"q": [1, 2.5, "x"]})
    assert item_size(state) == len(msgpack.packb(item_wire(state), use_bin_type=True))
    assert state.size == item_size(state)  # remembered
    assert state == State("p1", 1, 3, {"q": [1, 2.5, "x"]})  # the remembered size is no part of it
