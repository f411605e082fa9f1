"""Bounds on gossip claims: well-formed lies with extreme numbers cannot cut a member off.

Driven through the state machine's public API (`receive`, `tick`, `members`), with the
frame's sender as the authenticated identity (what CURVE gives the transport).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random

from hypothesis import given
from hypothesis import strategies as st

from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import Memberlist, Outbound
from daemons.gossip.messages import (
    MAX_INCARNATION,
    MAX_VERSION,
    Alive,
    Dead,
    GossipItem,
    Message,
    State,
    Status,
    Suspect,
    SyncEntry,
    SyncReq,
    SyncResp,
    decode,
    encode,
)

FORGER = "mallory"


def machine(node: str = "me", n_peers: int = 3, **config: int) -> Memberlist:
    cfg = dataclasses.replace(GossipConfig.lan(), **config)
    ml = Memberlist(node, f"sim://{node}", config=cfg, generation=5, rng=random.Random(1))
    for i in range(n_peers):
        relay(ml, Alive(f"p{i}", f"sim://p{i}", 1, 0), sender=f"p{i}")
    ml.drain_events()
    return ml


def relay(ml: Memberlist, *items: GossipItem, sender: str = FORGER, now: float = 0.0) -> list[Outbound]:
    return ml.receive(now, f"sim://{sender}", Message(sender, 0, 0, items[0], tuple(items[1:])))


def status(ml: Memberlist, node: str) -> tuple[Status, int, int, str] | None:
    m = ml.member(node)
    return None if m is None else (m.status, m.gen, m.inc, m.addr)


def refused(ml: Memberlist) -> int:
    return ml.stats.extra.get("refused_claims", 0)


def test_a_relayed_suspicion_at_an_extreme_incarnation_is_refused() -> None:
    ml = machine()
    relay(ml, Suspect("p0", 1, MAX_INCARNATION, FORGER), Dead("p1", 1, MAX_INCARNATION, FORGER))
    assert status(ml, "p0") == (Status.ALIVE, 1, 0, "sim://p0")
    assert status(ml, "p1") == (Status.ALIVE, 1, 0, "sim://p1")
    assert refused(ml) == 2
    # within the step it is an ordinary suspicion, which the member refutes first-hand
    relay(ml, Suspect("p0", 1, 3, FORGER))
    assert status(ml, "p0") == (Status.SUSPECT, 1, 3, "sim://p0")
    relay(ml, Alive("p0", "sim://p0", 1, 4), sender="p0")
    assert status(ml, "p0") == (Status.ALIVE, 1, 4, "sim://p0")


def test_only_the_member_raises_its_incarnation_far() -> None:
    ml = machine()
    relay(ml, Alive("p0", "sim://p0", 1, 10_000))
    assert status(ml, "p0") == (Status.ALIVE, 1, 0, "sim://p0")
    relay(ml, Alive("p0", "sim://p0", 1, 10_000), sender="p0")
    assert status(ml, "p0") == (Status.ALIVE, 1, 10_000, "sim://p0")


def test_a_relayed_death_only_starts_a_suspicion_which_the_member_refutes() -> None:
    ml = machine()
    relay(ml, Dead("p0", 1, 0, FORGER))
    assert status(ml, "p0") == (Status.SUSPECT, 1, 0, "sim://p0")  # never dead from one item
    relay(ml, Alive("p0", "sim://p0", 1, 1), sender="p0")
    assert status(ml, "p0") == (Status.ALIVE, 1, 1, "sim://p0")


def test_a_live_members_address_moves_only_when_it_says_so() -> None:
    ml = machine()
    relay(ml, Alive("p0", "tcp://evil:1", 1, 1))
    assert status(ml, "p0") == (Status.ALIVE, 1, 0, "sim://p0")
    relay(ml, Alive("p0", "sim://p0-moved", 1, 1), sender="p0")
    assert status(ml, "p0") == (Status.ALIVE, 1, 1, "sim://p0-moved")


def test_a_relayed_restart_must_be_a_fresh_life() -> None:
    ml = machine()
    relay(ml, Alive("p0", "sim://p0", 2, 500))
    assert status(ml, "p0") == (Status.ALIVE, 1, 0, "sim://p0")
    relay(ml, Alive("p0", "sim://p0", 2, 0))  # a real restart, relayed
    assert status(ml, "p0") == (Status.ALIVE, 2, 0, "sim://p0")


def test_a_member_takes_a_newer_generation_when_someone_claims_one_of_its_own() -> None:
    a = machine("a", 0)
    b = machine("b", 0)
    relay(b, Alive("a", "sim://a", 5, 0), sender="a")
    forged = Alive("a", "tcp://evil:1", 10**15, 0)  # a forged "restart" to an attacker's address
    relay(b, forged)
    assert status(b, "a") == (Status.ALIVE, 10**15, 0, "tcp://evil:1")
    relay(a, forged)  # a hears it (gossip reaches everyone)
    assert a.generation == 10**15 + 1 and a.incarnation == 0
    # its new life reaches b first-hand (here through push/pull) and wins over the forgery
    b.receive(1.0, "sim://a", Message("a", 0, 0, SyncResp(False, (), (a.self_entry(),))))
    assert status(b, "a") == (Status.ALIVE, 10**15 + 1, 0, "sim://a")


def test_an_extreme_claim_about_itself_never_silences_a_member() -> None:
    ml = machine()
    relay(ml, Suspect("me", 5, MAX_INCARNATION, FORGER))
    assert ml.incarnation == 0 and refused(ml) == 1  # beyond anything it said: a lie
    # one that would overflow its refutation after legitimate growth: a new life instead
    ml.incarnation = MAX_INCARNATION - 2
    relay(ml, Suspect("me", 5, MAX_INCARNATION, FORGER))
    assert ml.generation == 6 and ml.incarnation == 0
    out = ml.tick(ml.next_deadline() + 1)
    assert all(len(encode(o.message)) > 0 and decode(encode(o.message)) == o.message for o in out)


def test_record_versions_are_bounded_and_the_owner_refutes_forged_ones() -> None:
    ml = machine()
    relay(ml, State("p0", 1, 1, {"endpoint": "tcp://p0"}), sender="p0")
    relay(ml, State("p0", 1, MAX_VERSION, {"endpoint": "tcp://evil"}))
    info = ml.member("p0")
    assert info is not None and info.record is not None and info.record.body == {"endpoint": "tcp://p0"}
    ml.update_local_record(0.0, {"mine": 1})
    relay(ml, State("me", 5, 1000, {"forged": True}))
    rec = ml.local_record
    assert rec is not None and rec.ver == 1001 and rec.body == {"mine": 1}


def test_the_member_table_is_capped() -> None:
    ml = machine(n_peers=2, max_members=4)
    relay(ml, *(Alive(f"x{i}", f"sim://x{i}", 1, 0) for i in range(50)))
    assert len(ml.members()) == 4 and refused(ml) == 49
    entries = tuple(SyncEntry(f"y{i}", f"sim://y{i}", 1, 0, Status.ALIVE, -1, None) for i in range(50))
    ml.receive(1.0, "sim://p0", Message("p0", 0, 0, SyncResp(False, (), entries)))
    assert len(ml.members()) == 4


# -------------------------------------------------------------- property: invariants
NODES = ["me", "p0", "p1", "p2", "x"]
items = st.one_of(
    st.builds(Alive, st.sampled_from(NODES), st.sampled_from(["sim://p0", "sim://x", "tcp://evil"]),
              st.sampled_from([1, 2, 5, 6, 10**12]), st.sampled_from([0, 1, 2, 17, 1000, MAX_INCARNATION])),
    st.builds(Suspect, st.sampled_from(NODES), st.sampled_from([1, 5, 10**12]),
              st.sampled_from([0, 1, 3, 16, 17, MAX_INCARNATION]), st.sampled_from([*NODES, FORGER])),
    st.builds(Dead, st.sampled_from(NODES), st.sampled_from([1, 5, 10**12]),
              st.sampled_from([0, 1, 3, 16, 17, MAX_INCARNATION]), st.sampled_from([*NODES, FORGER])),
    st.builds(State, st.sampled_from(NODES), st.sampled_from([1, 5]),
              st.sampled_from([1, 2, 100, MAX_VERSION]), st.just({"k": 1})),
)
steps = st.lists(st.tuples(st.sampled_from([FORGER, "p0", "p1"]), items, st.floats(0, 3)), max_size=40)


@given(steps)
def test_property_no_input_sequence_breaks_the_invariants(seq: list[tuple[str, GossipItem, float]]) -> None:
    ml = machine(max_members=5)
    now = 0.0
    life = (ml.generation, ml.incarnation)
    for sender, item, dt in seq:
        now += dt
        before = {m.node: m.status for m in ml.members()}
        relay(ml, item, sender=sender, now=now)
        after = {m.node: m.status for m in ml.members()}
        # own (generation, incarnation) never goes back, and stays encodable
        assert (ml.generation, ml.incarnation) >= life
        life = (ml.generation, ml.incarnation)
        assert ml.incarnation <= MAX_INCARNATION
        assert len(ml.members()) <= 5
        assert ml.member("me") is not None and after["me"] is Status.ALIVE
        # one relayed item never kills a member held alive (a leave is the member's own word)
        for node, was in before.items():
            if was is Status.ALIVE and after.get(node) is Status.DEAD:
                raise AssertionError(f"{node} declared dead by one item {item} from {sender}")
        for out in ml.tick(now):
            assert decode(encode(out.message)) == out.message
    relay(ml, SyncReq(False, ()), sender="p0", now=now + 1)  # type: ignore[arg-type]


# -------------------------------------------------------------- property: the gossip codec
node_ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
incs = st.integers(0, MAX_INCARNATION)
gens = st.integers(0, 2**63 - 1)
codec_items = st.one_of(
    st.builds(Alive, node_ids, node_ids, gens, incs),
    st.builds(Suspect, node_ids, gens, incs, node_ids),
    st.builds(Dead, node_ids, gens, incs, node_ids),
    st.builds(State, node_ids, gens, st.integers(1, MAX_VERSION),
              st.dictionaries(st.text(max_size=5), st.integers(-9, 9) | st.text(max_size=5), max_size=3)),
)


@given(node_ids, incs, st.integers(0, 2**63 - 1), codec_items, st.lists(codec_items, max_size=4))
def test_property_every_valid_gossip_message_round_trips(sender: str, inc: int, seq: int, body: GossipItem,
                                                          items: list[GossipItem]) -> None:
    msg = Message(sender, inc, seq, body, tuple(items))
    assert decode(encode(msg)) == msg


@given(st.binary(max_size=300))
def test_property_gossip_decode_only_raises_its_own_error(raw: bytes) -> None:
    from daemons.gossip.messages import GossipDecodeError

    with contextlib.suppress(GossipDecodeError):
        decode(raw)


@given(codec_items, st.data())
def test_property_mutated_gossip_frames_only_raise_its_own_error(item: GossipItem, data: st.DataObject) -> None:
    from daemons.gossip.messages import GossipDecodeError

    raw = bytearray(encode(Message("x", 0, 0, item)))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(GossipDecodeError):
        decode(bytes(raw[: data.draw(st.integers(1, len(raw)))]))
