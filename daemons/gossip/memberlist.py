"""The `Memberlist`: SWIM + Lifeguard membership and record gossip as a sans-IO state machine.

Modelled on hashicorp/memberlist `state.go`. The machine never reads a clock and
never touches a socket: the caller feeds it

- ``tick(now)`` whenever ``next_deadline()`` is reached (or more often),
- ``receive(now, sender_addr, message)`` for every decoded frame,
- ``join(now, seeds)``, ``leave(now)``, ``update_local_record(now, body)``,
- ``note_loop_lag(seconds)`` from the event loop's periodic tick,

and sends the returned ``Outbound(addr, message)`` list; membership changes are
collected as `MemberEvent` and drained with ``drain_events()``. The same code
runs over ZeroMQ (`transport.py`) and over the simulated network (`simnet.py`).

Protocol summary (SWIM, DSN 2002; Lifeguard, arXiv 1707.00788; hashicorp/memberlist), and why:

- Probing: every period (probe_interval x (LHM+1)) ping the next member of a shuffled
  round-robin list, which bounds first detection at ~2N periods. No ack within the
  probe timeout -> PING_REQ via k relays, which nack at 80 % of the timeout. No ack by
  the end of the period -> SUSPECT. Only seq-numbered ping/ack produce verdicts,
  never a socket error.
- Precedence within one generation is the total order (incarnation, status rank) with
  ALIVE < SUSPECT < DEAD < LEFT: Suspect beats Alive at equal incarnation, Dead beats
  Alive and Suspect at its incarnation and below, and only the member itself raises
  its incarnation to refute. A higher generation (a restart) beats everything.
- Suspicion timeouts follow Lifeguard (see `suspicion.py`); pings to a suspect carry
  the suspicion (buddy system) so it can refute at once.
- Dissemination: every change is queued once and piggybacked on every message,
  and on gossip messages to `gossip_nodes` random members each gossip interval,
  `retransmit_limit(N)` times; periodic push/pull exchanges digests and only the
  newer entries, repairing whatever gossip missed (also across a healed partition:
  one dead member is retried each round, as Serf's reconnect does).
- Dead members are gossiped to for `gossip_to_the_dead_time`, kept until
  `dead_reap_time`, then forgotten, leaving a tombstone so stale gossip cannot
  resurrect them. The table holds at most `max_members`; newcomers beyond it are refused.

Bounds on claims. Authentication (CURVE) says who sent a frame, not whether what it says
about others is true, and one item with an extreme number used to cut a member off for
good (a suspicion at incarnation 2^63 - 1 can never be refuted). SWIM's rule is that only
member Mi increments Mi's incarnation (Das et al., SWIM, DSN 2002, §4.2), and memberlist
refuses an alive message that changes a live member's address (`aliveNode`, state.go) and
lets a remote DEAD only raise a suspicion when merging state (`mergeState`). Here:

- first-hand (frame sender == the member the item is about) claims follow the plain rules
  above; a relayed claim may raise a member's incarnation by at most
  `max_incarnation_step` over what we know, and may not move a live member to another
  address in the same generation;
- a relayed new generation (a restart) must be a fresh life: incarnation at most
  `max_incarnation_step`;
- a relayed DEAD about a member we hold ALIVE only makes it SUSPECT (our own Lifeguard
  timer decides, and the member can refute): one item never kills a live member;
- a relayed record version may exceed the one we hold by at most the owner's
  publication rate allows (one per `record_min_interval` since ours arrived) plus
  `max_version_step`;
- a member refutes any claim about itself it did not make: a suspicion or death (SWIM),
  a record version above its own (republished one higher), and a generation above its own
  (it takes a newer generation, as a restart would). Claims about itself beyond
  `max_incarnation_step` over its own incarnation are lies and are ignored; if a refutation
  would overflow the wire range, it takes a new generation instead, so no number, however
  extreme, can silence a member that is still running.

Refused claims are counted in `stats.extra["refused_claims"]`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from daemons.gossip.awareness import Awareness
from daemons.gossip.broadcast import BroadcastQueue
from daemons.gossip.config import GossipConfig
from daemons.gossip.messages import (
    MAX_GENERATION,
    MAX_INCARNATION,
    MAX_VERSION,
    Ack,
    Alive,
    Body,
    Dead,
    DigestEntry,
    GossipItem,
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
    entry_size,
    item_size,
)
from daemons.gossip.records import NodeRecord, RecordPublisher, normalize_body
from daemons.gossip.suspicion import Suspicion

_MAX_TOMBSTONES = 4096
_MAX_ORPHANS = 1024  # records that arrived before their member's ALIVE
_SYNC_OVERHEAD = 64  # frame header and array prefixes around the sync entries


class EventKind(StrEnum):
    JOINED = "joined"  # a new member, or a new generation (restart) of a known one
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"  # graceful leave
    ALIVE_AGAIN = "alive-again"  # a suspect or dead member refuted at the same generation
    RECORD_UPDATED = "record-updated"  # includes our own publications
    REAPED = "reaped"  # a dead or left member forgotten after dead_reap_time


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """One membership change as seen by this member at time `at` (its own clock)."""

    kind: EventKind
    node: str
    addr: str
    gen: int
    inc: int
    at: float
    record: NodeRecord | None = None
    origin: str | None = None  # accuser of a SUSPECT / DEAD
    restarted: bool = False  # JOINED with a newer generation of a known node


class Outbound(NamedTuple):
    """A message for the caller to send to `addr`."""

    addr: str
    message: Message


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A read-only snapshot of one member for views."""

    node: str
    addr: str
    status: Status
    gen: int
    inc: int
    since: float  # when the status last changed (local clock)
    record: NodeRecord | None
    record_age: float | None  # seconds since this version arrived here (local clock)
    is_self: bool


@dataclass(slots=True)
class _Member:
    node: str
    addr: str
    gen: int
    inc: int
    status: Status
    since: float
    record: NodeRecord | None = None
    record_at: float = 0.0
    suspicion: Suspicion | None = None


@dataclass(slots=True)
class _Probe:
    target: str
    gen: int  # the life and incarnation probed: a verdict on them says nothing of a newer one
    inc: int
    seq: int
    start: float
    direct_deadline: float
    deadline: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    origin_addr: str
    origin_seq: int
    nack_at: float
    expires: float
    nacked: bool = False


@dataclass(slots=True)
class Stats:
    """Counters for benchmarks and logs (monotonic)."""

    probes: int = 0
    probe_failures: int = 0
    indirect_probes: int = 0
    nacks_sent: int = 0
    suspicions_raised: int = 0
    deaths_declared: int = 0
    refutations: int = 0
    probe_acks: int = 0  # direct or indirect probes answered in time
    probe_rtt_s: float = 0.0  # their round trips summed (probe sent -> ack), for a mean
    gossip_messages: int = 0
    push_pulls: int = 0
    ignored_pings: int = 0
    conflicts: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Memberlist:
    """One member's protocol state. See the module docstring for the contract."""

    def __init__(
        self,
        node_id: str,
        addr: str,
        *,
        config: GossipConfig | None = None,
        generation: int,
        rng: random.Random | None = None,
        now: float = 0.0,
    ) -> None:
        self.config = config or GossipConfig.lan()
        self.node_id = node_id
        self.addr = addr
        self.generation = generation
        self.incarnation = 0
        self.stats = Stats()
        self._rng = rng or random.Random()
        self._now = now
        self._awareness = Awareness(
            self.config.awareness_max_multiplier, self.config.loop_lag_threshold,
            self.config.loop_lag_recovery_ticks,
        )
        self._queue: BroadcastQueue[GossipItem] = BroadcastQueue(self.config.max_queue_items)
        self._publisher = RecordPublisher(node_id, generation)
        self._members: dict[str, _Member] = {
            node_id: _Member(node_id, addr, generation, 0, Status.ALIVE, now)
        }
        self._live = 1  # members ALIVE or SUSPECT, self included: the N of every formula
        self._peers: list[str] = []  # every other member, for O(1) random sampling
        self._peer_pos: dict[str, int] = {}
        self._dead: dict[str, None] = {}  # DEAD or LEFT members, ordered by time of death
        self._suspects: dict[str, None] = {}  # members with a running suspicion timer
        self._tombstones: dict[str, tuple[int, int]] = {}
        self._orphans: dict[str, State] = {}
        self._probe_order: list[str] = []
        self._probe_idx = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._events: list[MemberEvent] = []
        self._out: list[Outbound] = []
        self._seeds: tuple[str, ...] = ()
        self._left = False
        # Stagger the periodic tasks so a cluster started at once does not beat in step.
        self._next_probe = now + self._rng.uniform(0, self.config.probe_interval)
        self._next_gossip = now + self._rng.uniform(0, self.config.gossip_interval)
        self._next_push_pull = now + self._rng.uniform(0.5, 1.0) * self.config.push_pull_interval
        self._next_join = float("inf")
        self._next_reap = now + self._reap_step()

    # ================================================================ public API
    @property
    def health(self) -> int:
        """Lifeguard Local Health Multiplier (0 = healthy)."""
        return self._awareness.score

    @property
    def num_live(self) -> int:
        """Members believed ALIVE or SUSPECT, this one included."""
        return self._live

    @property
    def left(self) -> bool:
        return self._left

    @property
    def local_record(self) -> NodeRecord | None:
        return self._publisher.current

    @property
    def queued_broadcasts(self) -> int:
        return len(self._queue)

    def join(self, now: float, seeds: Iterable[str]) -> list[Outbound]:
        """Contact `seeds` (addresses) with a full sync; retried until someone is known."""
        self._advance(now)
        self._seeds = tuple(s for s in dict.fromkeys(seeds) if s != self.addr)
        self._send_joins()
        return self._flush()

    def leave(self, now: float) -> list[Outbound]:
        """Announce a graceful leave; keep ticking a few gossip rounds so it spreads."""
        self._advance(now)
        if not self._left:
            self._left = True
            me = self._members[self.node_id]
            self._set_status(me, Status.LEFT, now)
            item = Dead(self.node_id, self.generation, self.incarnation, self.node_id)
            self._broadcast(item)
            for peer in self._sample(self.config.gossip_nodes, self._is_live):
                self._send(self._members[peer].addr, item)
        return self._flush()

    def update_local_record(self, now: float, body: Mapping[str, Any]) -> list[Outbound]:
        """Stage a new record body; it is published now or when the rate limit allows.

        Raises ValueError when the body is not a msgpack-able map or is too large.
        """
        self._advance(now)
        self._publisher.stage(normalize_body(body, self.config.max_record_bytes))
        self._publish_record(now)
        return self._flush()

    def note_loop_lag(self, seconds: float) -> None:
        """Feed the lateness of the caller's periodic event-loop tick into local health."""
        self._awareness.note_loop_lag(seconds)

    def tick(self, now: float) -> list[Outbound]:
        """Run every timer that is due at `now`."""
        self._advance(now)
        now = self._now
        self._publish_record(now)
        self._run_probe(now)
        self._run_relays(now)
        self._run_suspicions(now)
        if now >= self._next_gossip:
            self._gossip(now)
        if now >= self._next_push_pull:
            self._push_pull(now)
        if now >= self._next_join:
            self._send_joins()
        if now >= self._next_reap:
            self._reap(now)
        return self._flush()

    def next_deadline(self) -> float:
        """The earliest time at which `tick` has work to do."""
        # A running minimum, not min() of a list: the simulator asks after every frame.
        due = self._next_push_pull if self._next_push_pull < self._next_join else self._next_join
        probe = self._probe
        if probe is None:
            if not self._left and self._next_probe < due:
                due = self._next_probe
        else:
            if probe.deadline < due:
                due = probe.deadline
            if not probe.indirect_sent and probe.direct_deadline < due:
                due = probe.direct_deadline
        if len(self._queue) and self._next_gossip < due:
            due = self._next_gossip
        for relay in self._relays.values():
            at = relay.expires if relay.nacked else relay.nack_at
            if at < due:
                due = at
        if self._dead and self._next_reap < due:
            due = self._next_reap
        for node in self._suspects:
            suspicion = self._members[node].suspicion
            if suspicion is not None and suspicion.deadline < due:
                due = suspicion.deadline
        record_due = self._publisher.due_at(self.config.record_interval(self._live))
        if record_due is not None and record_due < due:
            due = record_due
        return due

    def receive(self, now: float, sender_addr: str, msg: Message) -> list[Outbound]:
        """Handle one decoded message from `sender_addr` (where replies go)."""
        self._advance(now)
        now = self._now
        if msg.sender == self.node_id:
            self.stats.conflicts += 1  # our own id from elsewhere: a loop or an impostor
            return []
        self._apply_items(now, msg.piggyback, msg.sender)
        body = msg.body
        if isinstance(body, Ping):
            self._on_ping(sender_addr, msg.seq, body)
        elif isinstance(body, Ack):
            self._on_ack(now, msg.seq)
        elif isinstance(body, Nack):
            if self._probe is not None and self._probe.seq == msg.seq:
                self._probe.nacks += 1
        elif isinstance(body, PingReq):
            self._on_ping_req(now, sender_addr, msg.seq, body)
        elif isinstance(body, SyncReq):
            self._on_sync_req(now, sender_addr, msg.sender, body)
        elif isinstance(body, SyncResp):
            self._on_sync_resp(now, sender_addr, msg.sender, body)
        else:
            self._apply_items(now, (body,), msg.sender)
        return self._flush()

    def _refuse(self, what: str) -> None:
        self.stats.extra["refused_claims"] = self.stats.extra.get("refused_claims", 0) + 1
        key = f"refused:{what}"
        self.stats.extra[key] = self.stats.extra.get(key, 0) + 1

    def drain_events(self) -> list[MemberEvent]:
        """Membership events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def members(self, now: float | None = None) -> list[MemberInfo]:
        """Snapshot of every known member (dead ones until reaped), self first."""
        t = self._now if now is None else now
        return [self._info(m, t) for m in self._members.values()]

    def records(self, now: float | None = None) -> list[tuple[str, Status, NodeRecord | None, float | None]]:
        """(node, status, record, record age) of every other member, dead ones until reaped:
        what `members` says of them that a placement view reads, without a MemberInfo each (a
        simulated peer reads it for every request it places: daemons/sim/peer.py)."""
        t = self._now if now is None else now
        me = self.node_id
        rows = []
        for m in self._members.values():
            if m.node != me:
                rec = m.record
                rows.append((m.node, m.status, rec, None if rec is None else max(0.0, t - m.record_at)))
        return rows

    def count_by_status(self) -> dict[str, int]:
        """Members by status name (lower case), this one included. Safe from another thread
        (a metrics scrape): the table is copied in one step under the GIL, then only read."""
        counts = {status.name.lower(): 0 for status in Status}
        for m in list(self._members.values()):
            counts[m.status.name.lower()] += 1
        return counts

    def member(self, node: str, now: float | None = None) -> MemberInfo | None:
        m = self._members.get(node)
        return None if m is None else self._info(m, self._now if now is None else now)

    def bootstrap(self, now: float, entries: Iterable[SyncEntry]) -> None:
        """Install a known membership silently (no events, no gossip).

        For simulations that start from a converged cluster: joining 1000 members one by
        one would mostly measure the join storm.
        """
        self._advance(now)
        for e in entries:
            if e.node == self.node_id or e.node in self._members:
                continue
            m = _Member(e.node, e.addr, e.gen, e.inc, Status.ALIVE, now)
            if e.body is not None and e.ver >= 1:
                m.record = NodeRecord(e.node, e.gen, e.ver, e.body)
                m.record_at = now
            self._add_member(m)
            if e.status is not Status.ALIVE:
                self._set_status(m, e.status, now)
        # Re-stagger anti-entropy for the cluster size we now know.
        self._next_push_pull = now + self._rng.uniform(0, 1) * self.config.push_pull_period(self._live)

    def self_entry(self) -> SyncEntry:
        """This member as a sync entry (for `bootstrap` of others)."""
        rec = self._publisher.current
        return SyncEntry(
            self.node_id, self.addr, self.generation, self.incarnation, Status.ALIVE,
            -1 if rec is None else rec.ver, None if rec is None else dict(rec.body),
        )

    # ================================================================ probing
    def _run_probe(self, now: float) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and now >= probe.direct_deadline:
                self._send_indirect(probe)
            if now >= probe.deadline:
                self._probe = None
                self._probe_failed(now, probe)
        if self._probe is None and not self._left and now >= self._next_probe:
            self._start_probe(now)

    def _start_probe(self, now: float) -> None:
        target = self._next_probe_target()
        interval = self._awareness.scale(self.config.probe_interval)
        self._next_probe = now + interval
        if target is None:
            return
        self._seq += 1
        timeout = self._awareness.scale(self.config.probe_timeout)
        self._probe = _Probe(target.node, target.gen, target.inc, self._seq, now, now + timeout, now + interval)
        self.stats.probes += 1
        buddy: tuple[GossipItem, ...] = ()
        if target.status is Status.SUSPECT:
            # Lifeguard buddy system: tell the suspect directly so it can refute at once.
            buddy = (Suspect(target.node, target.gen, target.inc, self.node_id),)
        self._send(target.addr, Ping(target.node), self._seq, buddy)

    def _next_probe_target(self) -> _Member | None:
        checked = 0
        while checked <= 1:
            if self._probe_idx >= len(self._probe_order):
                self._reset_probe_order()
                checked += 1
                continue
            node = self._probe_order[self._probe_idx]
            self._probe_idx += 1
            m = self._members.get(node)
            if m is not None and m.status <= Status.SUSPECT and node != self.node_id:
                return m
        return None

    def _reset_probe_order(self) -> None:
        self._probe_order = [n for n in self._members if n != self.node_id and n not in self._dead]
        self._rng.shuffle(self._probe_order)
        self._probe_idx = 0

    def _send_indirect(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        target = self._members.get(probe.target)
        if target is None:
            return

        def relay_ok(m: _Member) -> bool:
            return m.status is Status.ALIVE and m.node != probe.target

        relays = self._sample(self.config.indirect_checks, relay_ok)
        probe.expected_nacks = len(relays)
        self.stats.indirect_probes += len(relays)
        for node in relays:
            self._send(self._members[node].addr, PingReq(target.node, target.addr), probe.seq)

    def _probe_failed(self, now: float, probe: _Probe) -> None:
        self.stats.probe_failures += 1
        # Lifeguard: silent relays mean the problem is probably on our side.
        if probe.expected_nacks > 0:
            self._awareness.apply_delta(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._awareness.apply_delta(1)
        m = self._members.get(probe.target)
        if m is None or m.status > Status.SUSPECT or (m.gen, m.inc) != (probe.gen, probe.inc):
            return  # gone, or it refuted or restarted while we probed: nothing to accuse
        if m.status is Status.ALIVE:
            self.stats.suspicions_raised += 1
        self._on_suspect(now, Suspect(m.node, m.gen, m.inc, self.node_id))

    def _on_ping(self, sender_addr: str, seq: int, body: Ping) -> None:
        if body.target != self.node_id:
            self.stats.ignored_pings += 1  # meant for whoever had this address before us
            return
        self._send(sender_addr, Ack(), seq)

    def _on_ack(self, now: float, seq: int) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq:
            self._probe = None
            self._awareness.apply_delta(-1)
            self.stats.probe_acks += 1
            self.stats.probe_rtt_s += now - probe.start
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send(relay.origin_addr, Ack(), relay.origin_seq)

    def _on_ping_req(self, now: float, sender_addr: str, seq: int, body: PingReq) -> None:
        self._seq += 1
        # Nack timer is not scaled by our health: it tells the prober about the network.
        self._relays[self._seq] = _Relay(
            sender_addr, seq, now + self.config.nack_timeout(), now + self.config.probe_interval,
        )
        self._send(body.addr, Ping(body.target), self._seq)

    def _run_relays(self, now: float) -> None:
        if not self._relays:
            return
        for seq, relay in list(self._relays.items()):
            if not relay.nacked and now >= relay.nack_at:
                relay.nacked = True
                self.stats.nacks_sent += 1
                self._send(relay.origin_addr, Nack(), relay.origin_seq)
            if now >= relay.expires:
                del self._relays[seq]

    # ================================================================ suspicion
    def _run_suspicions(self, now: float) -> None:
        if not self._suspects:
            return
        members = [self._members[n] for n in self._suspects]
        expired = [m for m in members if m.suspicion is not None and now >= m.suspicion.deadline]
        for m in expired:
            self.stats.deaths_declared += 1
            self._on_dead(now, Dead(m.node, m.gen, m.inc, self.node_id))

    # ================================================================ gossip items
    def _apply_items(self, now: float, items: Iterable[GossipItem], sender: str) -> None:
        records: list[State] = []
        for item in items:
            if isinstance(item, Alive):
                self._on_alive(now, item, sender)
            elif isinstance(item, Suspect):
                self._on_suspect(now, item, sender)
            elif isinstance(item, Dead):
                self._on_dead(now, item, sender)
            else:
                records.append(item)
        # Records last: a record about a member we learn in the same frame must find it.
        for rec in records:
            self._on_state(now, rec, sender)

    def _self_claim(self, gen: int, inc: int) -> bool:
        """A claim about us at (gen, inc) that contradicts us: refute it; True if handled."""
        if gen > self.generation:
            self.stats.conflicts += 1
            self._regenerate(gen)  # someone claims a newer life of ours: take an even newer one
            return True
        if gen != self.generation:
            return True  # about a previous life
        if inc > self.incarnation + self.config.max_incarnation_step:
            self._refuse("self-incarnation")  # nobody can know a higher incarnation of ours
            return True
        return False

    def _relayed_inc_ok(self, m: _Member, gen: int, inc: int, sender: str) -> bool:
        """SWIM: only the member raises its incarnation; a relay may carry it a little further."""
        if sender == m.node or gen != m.gen or inc <= m.inc + self.config.max_incarnation_step:
            return True
        self._refuse("incarnation")
        return False

    def _on_alive(self, now: float, a: Alive, sender: str = "") -> None:
        if a.node == self.node_id:
            if self._self_claim(a.gen, a.inc):
                return
            if a.inc > self.incarnation or a.addr != self.addr:
                self.stats.conflicts += 1
                self._refute(a.inc)
            return
        firsthand = sender == a.node
        m = self._members.get(a.node)
        if m is None:
            tomb = self._tombstones.get(a.node)
            if tomb is not None and (a.gen, a.inc) <= tomb:
                return  # stale gossip about a member we already buried
            if len(self._members) >= self.config.max_members:
                self._refuse("member-cap")
                return
            self._tombstones.pop(a.node, None)
            m = _Member(a.node, a.addr, a.gen, a.inc, Status.ALIVE, now)
            self._add_member(m)
            self._event(EventKind.JOINED, m, now)
            self._broadcast(a)
            self._adopt_orphan(m, now)
            return
        if a.gen > m.gen:
            if not firsthand and a.inc > self.config.max_incarnation_step:
                self._refuse("generation")  # a relayed restart must be a fresh life
                return
            m.gen, m.inc, m.addr = a.gen, a.inc, a.addr
            if m.record is not None and m.record.gen < a.gen:
                m.record = None  # the previous life's record is void
            self._set_status(m, Status.ALIVE, now)
            self._event(EventKind.JOINED, m, now, restarted=True)
            self._broadcast(a)
            self._adopt_orphan(m, now)
            return
        if a.gen < m.gen or a.inc <= m.inc or not self._relayed_inc_ok(m, a.gen, a.inc, sender):
            return
        if not firsthand and a.addr != m.addr and m.status <= Status.SUSPECT:
            self._refuse("address")  # memberlist: a live member keeps its address unless it says so
            return
        was = m.status
        m.inc, m.addr = a.inc, a.addr
        self._set_status(m, Status.ALIVE, now)
        if was is not Status.ALIVE:
            self._event(EventKind.ALIVE_AGAIN, m, now)
        self._broadcast(a)

    def _on_suspect(self, now: float, s: Suspect, sender: str = "") -> None:
        if s.node == self.node_id:
            if self._left or self._self_claim(s.gen, s.inc):
                return
            if s.inc >= self.incarnation:
                self._refute(s.inc)
            return
        m = self._members.get(s.node)
        if m is None or s.gen != m.gen or s.inc < m.inc or m.status > Status.SUSPECT:
            return
        if not self._relayed_inc_ok(m, s.gen, s.inc, sender):
            return
        if m.suspicion is not None:
            m.inc = max(m.inc, s.inc)
            if m.suspicion.confirm(s.origin):
                self._broadcast(s)  # a new independent accuser shortens everyone's timer
            return
        n = self._live
        min_s = self.config.suspicion_min(n)
        m.suspicion = Suspicion(
            now, s.origin, self.config.suspicion_confirmations(n), min_s,
            self.config.suspicion_max(n),
        )
        m.inc = s.inc
        self._set_status(m, Status.SUSPECT, now)
        self._event(EventKind.SUSPECT, m, now, origin=s.origin)
        self._broadcast(s)

    def _on_dead(self, now: float, d: Dead, sender: str = "") -> None:
        leaving = d.origin == d.node
        if d.node == self.node_id:
            if self._left or self._self_claim(d.gen, d.inc):
                return
            if d.inc >= self.incarnation:
                self._refute(d.inc)
            return
        m = self._members.get(d.node)
        if m is None:
            return
        new = Status.LEFT if leaving else Status.DEAD
        if d.gen < m.gen or (d.gen == m.gen and (d.inc, new) <= (m.inc, m.status)):
            return
        if d.gen > m.gen and sender != d.node:
            self._refuse("generation")  # only the member speaks of a life we have not seen
            return
        if not self._relayed_inc_ok(m, d.gen, d.inc, sender):
            return
        if not leaving and m.status is Status.ALIVE and sender != self.node_id:
            # One DEAD about a member we hold alive only starts our own suspicion (memberlist's
            # mergeState rule, applied to gossip too): our timer decides, and it can refute.
            self._on_suspect(now, Suspect(d.node, d.gen, d.inc, d.origin), sender)
            return
        if d.gen > m.gen:
            m.gen = d.gen
            if m.record is not None and m.record.gen < d.gen:
                m.record = None
        m.inc = d.inc
        self._set_status(m, new, now)
        self._event(EventKind.LEFT if leaving else EventKind.DEAD, m, now, origin=d.origin)
        self._broadcast(d)

    def _on_state(self, now: float, s: State, sender: str = "") -> None:
        if s.node == self.node_id:
            # Only the owner writes its record: a version of ours we never made is refuted by
            # republishing ours above it, as an incarnation refutes a suspicion.
            if not self._self_claim(s.gen, 0):
                self._supersede_record(now, s.ver)
            return
        m = self._members.get(s.node)
        if m is None or s.gen > m.gen:
            self._keep_orphan(s)  # its ALIVE may come in a later frame
            return
        if s.gen < m.gen:
            return  # a previous life's record
        if m.record is not None and s.ver <= m.record.ver:
            return
        if m.record is not None and sender != s.node and s.ver > self._max_relayed_ver(m, now):
            self._refuse("version")
            return
        m.record = NodeRecord(s.node, s.gen, s.ver, s.body)
        m.record_at = now
        self._event(EventKind.RECORD_UPDATED, m, now)
        self._broadcast(s)

    def _keep_orphan(self, s: State) -> None:
        old = self._orphans.pop(s.node, None)
        self._orphans[s.node] = s if old is None or (s.gen, s.ver) > (old.gen, old.ver) else old
        if len(self._orphans) > _MAX_ORPHANS:
            del self._orphans[next(iter(self._orphans))]

    def _adopt_orphan(self, m: _Member, now: float) -> None:
        orphan = self._orphans.get(m.node)
        if orphan is not None and orphan.gen <= m.gen:
            del self._orphans[m.node]
            self._on_state(now, orphan)

    def _max_relayed_ver(self, m: _Member, now: float) -> int:
        """The highest version of `m`'s record its owner could have published by now."""
        assert m.record is not None
        interval = max(self.config.record_min_interval, 1e-3)
        return m.record.ver + self.config.max_version_step + int(max(0.0, now - m.record_at) / interval)

    def _supersede_record(self, now: float, claimed_ver: int) -> None:
        current = self._publisher.current
        if current is not None and claimed_ver <= current.ver:
            return  # our own record, echoed
        self._refuse("self-record")
        if claimed_ver >= MAX_VERSION:
            self._regenerate(self.generation)
            return
        if current is None:
            self._publisher.raise_floor(claimed_ver)  # our first version will go above it
            return
        rec = self._publisher.republish_above(now, claimed_ver)
        me = self._members[self.node_id]
        me.record, me.record_at = rec, now
        self._broadcast(State(rec.node, rec.gen, rec.ver, dict(rec.body)))

    def _regenerate(self, claimed_gen: int) -> None:
        """Take a generation above `claimed_gen`, as a restart would: incarnation and record
        versions start again, and the new life beats every claim about the old ones."""
        if claimed_gen >= MAX_GENERATION:
            self._refuse("self-generation")  # cannot go higher; the claim stays a lie
            return
        self.generation = claimed_gen + 1
        self.incarnation = 0
        me = self._members[self.node_id]
        me.gen, me.inc = self.generation, 0
        current = self._publisher.current
        self._publisher = RecordPublisher(self.node_id, self.generation)
        if current is not None:
            self._publisher.stage(dict(current.body))
            self._publisher.force_due()
        self.stats.refutations += 1
        self._broadcast(Alive(self.node_id, self.addr, self.generation, 0))
        self._publish_record(self._now)

    def _refute(self, accused_inc: int) -> None:
        """Only we raise our incarnation: above both our own and the accusation's."""
        if accused_inc >= MAX_INCARNATION:
            self._regenerate(self.generation)  # out of incarnations: a new life instead
            return
        self.incarnation = max(self.incarnation + 1, accused_inc + 1)
        me = self._members[self.node_id]
        me.inc = self.incarnation
        self.stats.refutations += 1
        self._awareness.apply_delta(1)  # being accused hints that others cannot hear us
        self._broadcast(Alive(self.node_id, self.addr, self.generation, self.incarnation))

    # ================================================================ dissemination
    def _gossip(self, now: float) -> None:
        step = self.config.gossip_interval
        self._next_gossip += step
        if self._next_gossip <= now:
            self._next_gossip = now + step  # skip missed rounds rather than bursting
        if not len(self._queue):
            return

        def gossip_ok(m: _Member) -> bool:
            if m.status <= Status.SUSPECT:
                return True
            # The wrongly dead need to hear it to refute; those who left do not care.
            return m.status is Status.DEAD and now - m.since < self.config.gossip_to_the_dead_time

        for node in self._sample(self.config.gossip_nodes, gossip_ok):
            items = self._queue.get(self.config.max_piggyback_bytes, self._limit())
            if not items:
                break
            self.stats.gossip_messages += 1
            self._emit(self._members[node].addr, Message(
                self.node_id, self.incarnation, 0, items[0], tuple(items[1:]),
            ))

    def _broadcast(self, item: GossipItem) -> None:
        if isinstance(item, State):
            self._queue.queue(("r", item.node), item, item_size(item))
        else:
            self._queue.queue(("m", item.node), item, item_size(item), urgent=True)

    def _limit(self) -> int:
        return self.config.retransmit_limit(self._live)

    def _publish_record(self, now: float) -> None:
        rec = self._publisher.publish(now, self.config.record_interval(self._live))
        if rec is None:
            return
        me = self._members[self.node_id]
        me.record, me.record_at = rec, now
        self._event(EventKind.RECORD_UPDATED, me, now)
        self._broadcast(State(rec.node, rec.gen, rec.ver, dict(rec.body)))

    # ================================================================ push/pull
    def _push_pull(self, now: float) -> None:
        self._next_push_pull = now + self.config.push_pull_period(self._live)
        if self._left:
            return
        targets = self._sample(1, lambda m: m.status is Status.ALIVE)
        # Serf-style reconnect: also try one dead member, so a healed partition merges.
        dead = [n for n in self._dead if self._members[n].status is Status.DEAD]
        if dead:
            targets.append(self._rng.choice(dead))
        if targets:
            digest = self._digest()
            for node in targets:
                self.stats.push_pulls += 1
                self._emit(self._members[node].addr, Message(
                    self.node_id, self.incarnation, 0, SyncReq(False, digest),
                ))

    def _send_joins(self) -> None:
        if not self._seeds or self._live > 1 or self._left:
            self._next_join = float("inf")
            return
        self._next_join = self._now + self.config.join_retry_interval
        me = Alive(self.node_id, self.addr, self.generation, self.incarnation)
        intro: tuple[GossipItem, ...] = (me,)
        rec = self._publisher.current
        if rec is not None:
            intro += (State(rec.node, rec.gen, rec.ver, dict(rec.body)),)
        for seed in self._seeds:
            self._emit(seed, Message(self.node_id, self.incarnation, 0, SyncReq(True, self._digest()), intro))

    def _digest(self) -> tuple[DigestEntry, ...]:
        return tuple(
            DigestEntry(m.node, m.gen, m.inc, m.status, _ver(m)) for m in self._members.values()
        )

    def _newer_entries(self, digest: Iterable[DigestEntry]) -> list[SyncEntry]:
        """Our entries that the digest's owner lacks or holds in an older form."""
        theirs = {d.node: d for d in digest}
        out = []
        for m in self._members.values():
            d = theirs.get(m.node)
            ver = _ver(m)
            if d is not None:
                if d.gen > m.gen:
                    continue
                if d.gen == m.gen and (d.inc, d.status) >= (m.inc, m.status) and d.ver >= ver:
                    continue
            elif m.status > Status.SUSPECT:
                continue  # no need to teach a stranger about the dead
            body = None if m.record is None or m.record.gen != m.gen else dict(m.record.body)
            out.append(SyncEntry(m.node, m.addr, m.gen, m.inc, m.status, ver, body))
        return out

    def _check_self_in_digest(self, digest: Iterable[DigestEntry]) -> None:
        for d in digest:
            if d.node == self.node_id:
                if self._left or self._self_claim(d.gen, d.inc):
                    return
                if d.status > Status.ALIVE and d.inc >= self.incarnation:
                    self._refute(d.inc)
                return

    def _on_sync_req(self, now: float, sender_addr: str, sender: str, req: SyncReq) -> None:
        self._check_self_in_digest(req.digest)
        entries = self._newer_entries(req.digest)
        digest = self._digest()
        digest_size = sum(len(d.node) + 24 for d in digest)
        chunks = self._chunk(entries, self.config.max_frame_bytes - digest_size - _SYNC_OVERHEAD)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            body = SyncResp(last, digest if last else (), tuple(chunk))
            self._emit(sender_addr, Message(self.node_id, self.incarnation, 0, body))

    def _on_sync_resp(self, now: float, sender_addr: str, sender: str, resp: SyncResp) -> None:
        for e in resp.entries:
            self._merge_entry(now, e, sender)
        if self._next_join != float("inf") and self._live > 1:
            # Joined. The seed could only give what it knew; members joining at the same
            # time spent their news before they knew us. One early anti-entropy round with
            # someone else fills that gap instead of waiting a full push/pull period.
            self._next_join = float("inf")
            self._next_push_pull = min(
                self._next_push_pull, now + self._rng.uniform(1.0, 2.0) * self.config.probe_interval,
            )
        if resp.push_back:
            self._check_self_in_digest(resp.digest)
            entries = self._newer_entries(resp.digest)
            for chunk in self._chunk(entries, self.config.max_frame_bytes - _SYNC_OVERHEAD):
                if chunk:
                    body = SyncResp(False, (), tuple(chunk))
                    self._emit(sender_addr, Message(self.node_id, self.incarnation, 0, body))

    def _merge_entry(self, now: float, e: SyncEntry, sender: str) -> None:
        if e.node != self.node_id and e.node not in self._members:
            if e.status > Status.SUSPECT:
                self._bury(e.node, e.gen, e.inc)  # remember, so stale gossip stays dead
                return
            self._on_alive(now, Alive(e.node, e.addr, e.gen, e.inc), sender)
        if e.status is Status.ALIVE:
            self._on_alive(now, Alive(e.node, e.addr, e.gen, e.inc), sender)
        elif e.status is Status.LEFT:
            self._on_dead(now, Dead(e.node, e.gen, e.inc, e.node), sender)
        else:
            # memberlist mergeState: a remote DEAD only makes us suspect, so one confused
            # member cannot kill others without our own timer running out.
            self._on_suspect(now, Suspect(e.node, e.gen, e.inc, sender), sender)
        if e.body is not None and e.ver >= 1:
            self._on_state(now, State(e.node, e.gen, e.ver, e.body), sender)

    @staticmethod
    def _chunk(entries: list[SyncEntry], budget: int) -> list[list[SyncEntry]]:
        chunks: list[list[SyncEntry]] = [[]]
        used = 0
        for e in entries:
            size = entry_size(e) + 2
            if chunks[-1] and used + size > budget:
                chunks.append([])
                used = 0
            chunks[-1].append(e)
            used += size
        return chunks

    # ================================================================ reaping
    def _reap_step(self) -> float:
        return min(1.0, self.config.dead_reap_time / 10)

    def _reap(self, now: float) -> None:
        self._next_reap = now + self._reap_step()
        for node in list(self._dead):
            m = self._members[node]
            if now - m.since < self.config.dead_reap_time:
                break  # ordered by time of death
            self._event(EventKind.REAPED, m, now)
            self._remove_member(m)
            self._bury(node, m.gen, m.inc)

    def _bury(self, node: str, gen: int, inc: int) -> None:
        old = self._tombstones.pop(node, None)
        self._tombstones[node] = max((gen, inc), old) if old is not None else (gen, inc)
        if len(self._tombstones) > _MAX_TOMBSTONES:
            del self._tombstones[next(iter(self._tombstones))]

    # ================================================================ member table
    def _add_member(self, m: _Member) -> None:
        self._members[m.node] = m
        self._peer_pos[m.node] = len(self._peers)
        self._peers.append(m.node)
        if m.status <= Status.SUSPECT:
            self._live += 1
        # Insert at a random position of the probe order (memberlist does the same),
        # so a newcomer is probed within one round without reshuffling everyone.
        order = self._probe_order
        order.append(m.node)
        j = self._rng.randrange(self._probe_idx, len(order)) if self._probe_idx < len(order) else len(order) - 1
        order[-1], order[j] = order[j], order[-1]

    def _remove_member(self, m: _Member) -> None:
        del self._members[m.node]
        self._dead.pop(m.node, None)
        self._suspects.pop(m.node, None)
        if m.status <= Status.SUSPECT:
            self._live -= 1
        pos = self._peer_pos.pop(m.node)
        last = self._peers.pop()
        if last != m.node:
            self._peers[pos] = last
            self._peer_pos[last] = pos
        self._queue.drop(("m", m.node))
        self._queue.drop(("r", m.node))

    def _set_status(self, m: _Member, status: Status, now: float) -> None:
        was_live = m.status <= Status.SUSPECT
        is_live = status <= Status.SUSPECT
        m.status = status
        m.since = now
        if was_live != is_live:
            self._live += 1 if is_live else -1
        if status is Status.SUSPECT and m.suspicion is not None:
            self._suspects[m.node] = None
        else:
            m.suspicion = None
            self._suspects.pop(m.node, None)
        if m.node == self.node_id:
            return
        self._dead.pop(m.node, None)
        if not is_live:
            self._dead[m.node] = None  # re-inserted: keeps the dict ordered by time of death

    def _is_live(self, m: _Member) -> bool:
        return m.status <= Status.SUSPECT

    def _sample(self, k: int, ok: Callable[[_Member], bool]) -> list[str]:
        """Up to `k` distinct random other members satisfying `ok`, in O(k) expected time."""
        peers = self._peers
        if k <= 0 or not peers:
            return []
        if len(peers) <= 4 * k:
            pool = [n for n in peers if ok(self._members[n])]
            return self._rng.sample(pool, min(k, len(pool)))
        picked: dict[str, None] = {}
        for _ in range(8 * k):
            node = peers[self._rng.randrange(len(peers))]
            if node not in picked and ok(self._members[node]):
                picked[node] = None
                if len(picked) == k:
                    break
        return list(picked)

    # ================================================================ plumbing
    def _advance(self, now: float) -> None:
        # Time never runs backwards for the machine, whatever the caller's clock does.
        if now > self._now:
            self._now = now
        if self._next_gossip < now and not len(self._queue):
            # Idle rounds pass without effect, but keep their cadence: news arriving now
            # waits for the next round, as with memberlist's ticker, instead of being
            # flooded onwards at once.
            step = self.config.gossip_interval
            self._next_gossip += math.ceil((now - self._next_gossip) / step) * step

    def _send(self, addr: str, body: Body, seq: int = 0, first: tuple[GossipItem, ...] = ()) -> None:
        budget = self.config.max_piggyback_bytes - sum(item_size(i) for i in first)
        items = first + tuple(self._queue.get(budget, self._limit()))
        self._emit(addr, Message(self.node_id, self.incarnation, seq, body, items))

    def _emit(self, addr: str, msg: Message) -> None:
        self._out.append(Outbound(addr, msg))

    def _flush(self) -> list[Outbound]:
        out, self._out = self._out, []
        return out

    def _event(
        self, kind: EventKind, m: _Member, now: float, *, origin: str | None = None, restarted: bool = False,
    ) -> None:
        self._events.append(MemberEvent(kind, m.node, m.addr, m.gen, m.inc, now, m.record, origin, restarted))

    def _info(self, m: _Member, now: float) -> MemberInfo:
        rec = m.record
        return MemberInfo(
            m.node, m.addr, m.status, m.gen, m.inc, m.since, rec,
            None if rec is None else max(0.0, now - m.record_at), m.node == self.node_id,
        )


def _ver(m: _Member) -> int:
    return -1 if m.record is None or m.record.gen != m.gen else m.record.ver


__all__ = ["EventKind", "MemberEvent", "MemberInfo", "Memberlist", "Outbound", "Stats"]
