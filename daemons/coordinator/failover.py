"""Coordinator failover: Binary Star with witnesses and epochs, as a pure state machine.

Two coordinators, a primary and a backup, publish a `CoordinatorState` heartbeat to each
other (ZeroMQ Guide, ch. 4, Binary Star). Exactly one is ACTIVE and answers
`Schedule`; the other is PASSIVE and refuses with `not_active`, which sends the load
generator to its peer. States and what moves them:

    PRIMARY, BACKUP   just started, undecided; refuse requests (only ACTIVE answers them)
    PRIMARY  + peer backup/passive   -> ACTIVE            (the normal start)
    any      + peer active           -> PASSIVE           (an active peer with a newer epoch
                                                           deposes an active one)
    PASSIVE  + peer primary/backup   -> ACTIVE            (the peer restarted and is not serving)
    PASSIVE  + peer passive          -> the primary goes ACTIVE (nobody serves: break the tie)
    not ACTIVE, the peer silent for `failover_after_s`
                                     -> a witness vote; a majority of live nodes that cannot
                                        reach the peer either -> ACTIVE

Binary Star lets a passive server take over only when a client asks it, as its guard
against split brain (a backup that merely lost its link to the primary has no reason to
act while nobody asks it). The witness vote answers that question directly (the nodes say
whether the peer is really gone or only cut off from us), so we ask the witnesses as soon
as the peer falls silent, and a takeover does not wait for the next request to arrive.

Every activation takes a new **epoch**, persisted (fsync) before the first answer
and carried by every placement; nodes refuse placements of an epoch older than the newest
they know, so a deposed coordinator that wakes up (SIGCONT, a healed partition) cannot
place anything. Primaries take odd epochs and backups even ones, so two coordinators can
never hold the same epoch, whatever they know of each other. Fail-back is manual.

`Failover` is the loop around them (when to ask, what an answer does, which event each step
writes), run by the real coordinator (server.py) and the simulated one (daemons/sim).
Times are the caller's monotonic clock; nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from daemons.core.messages import WitnessQuery

ROLES = ("primary", "backup")


class State(enum.StrEnum):
    PRIMARY = "primary"
    BACKUP = "backup"
    ACTIVE = "active"
    PASSIVE = "passive"


def next_epoch(role: str, seen: int) -> int:
    """The smallest epoch above `seen` of this role's parity (primary odd, backup even)."""
    candidate = seen + 1
    return candidate if candidate % 2 == (1 if role == "primary" else 0) else candidate + 1


@dataclass
class BinaryStar:
    role: str  # primary | backup
    failover_after_s: float
    epoch: int  # the newest epoch this coordinator has taken or seen (persisted across restarts)
    started_at: float
    state: State = field(init=False)
    peer_state: str = ""  # the peer's last heartbeat said this; "" if never heard
    peer_heard_at: float | None = None
    serving_epoch: int = field(default=0, init=False)  # the epoch of our latest activation
    reason: str = ""  # why the last transition happened, for the events log

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r}: expected one of {ROLES}")
        self.state = State(self.role)

    @property
    def active(self) -> bool:
        return self.state is State.ACTIVE

    def peer_silent(self, now: float) -> bool:
        """Not heard for failover_after_s (since our own start if never heard)."""
        last = self.started_at if self.peer_heard_at is None else self.peer_heard_at
        return now - last >= self.failover_after_s

    def on_peer(self, state: str, epoch: int, now: float) -> State | None:
        """A heartbeat from the peer; returns the new state if this one changed."""
        self.peer_state, self.peer_heard_at = state, now
        self.epoch = max(self.epoch, epoch)
        before = self.state
        if state == State.ACTIVE and (self.state is not State.ACTIVE or epoch > self.serving_epoch):
            self._become(State.PASSIVE, f"peer active in epoch {epoch}")
        elif self.state is State.PRIMARY and state in (State.BACKUP, State.PASSIVE):
            self._take_over(f"peer is {state}")
        elif self.state is State.PASSIVE and state in (State.PRIMARY, State.BACKUP):
            self._take_over(f"peer restarted ({state})")
        elif self.state is State.PASSIVE and state == State.PASSIVE and self.role == "primary":
            self._take_over("both passive: the primary serves")
        return self.state if self.state is not before else None

    def should_vote(self, now: float) -> bool:
        """Time to ask the witnesses whether to take over."""
        return self.state is not State.ACTIVE and self.peer_silent(now)

    def on_vote(self, granted: bool, witness_epoch: int, now: float, detail: str) -> State | None:
        """The witnesses answered; take over if they granted it and the peer is still silent."""
        self.epoch = max(self.epoch, witness_epoch)
        if self.state is State.ACTIVE or not granted or not self.peer_silent(now):
            return None
        self._take_over(f"peer silent, witnesses: {detail}")
        return self.state

    # ----- internals -----------------------------------------------------------------
    def _take_over(self, why: str) -> None:
        self.epoch = self.serving_epoch = next_epoch(self.role, self.epoch)
        self._become(State.ACTIVE, why)

    def _become(self, state: State, why: str) -> None:
        self.state, self.reason = state, why


@dataclass
class VoteRound:
    """One witness vote: do a majority of the live nodes also fail to reach the peer?"""

    expected: frozenset[str]  # the nodes asked (those alive in our view)
    deadline: float
    granted: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)
    epoch: int = 0  # the newest epoch any witness knows

    def add(self, node: str, granted: bool, epoch: int) -> None:
        if node not in self.expected or node in self.granted | self.denied:
            return  # not asked, or a repeated answer: one vote per node
        (self.granted if granted else self.denied).add(node)
        self.epoch = max(self.epoch, epoch)

    def outcome(self, now: float) -> bool | None:
        """True/False once decided (a majority either way, or the deadline); None while open."""
        need = len(self.expected) // 2 + 1
        if len(self.granted) >= need:
            return True
        if len(self.expected) - len(self.denied) < need or now >= self.deadline:
            return False
        return None

    def detail(self) -> str:
        return f"{len(self.granted)} of {len(self.expected)} cannot reach it, {len(self.denied)} can"


Event = tuple[str, str, str]  # (kind, target, detail): as cluster.py's, a row of events.csv


@dataclass
class Failover:
    """A coordinator's failover loop around its `BinaryStar`, without sockets or clocks.

    When to ask the witnesses, what their answer does, which event each step writes and how a
    coordinator that does not serve refuses: the real coordinator (server.py, over ZeroMQ and
    witnesses.py) and the simulated one (daemons/sim/coordinator.py, on the virtual clock)
    both run this, so a simulated takeover follows the same rules as a real one.
    """

    star: BinaryStar
    name: str  # this coordinator's name (the target of its events)
    peer: str  # the peer's request endpoint: the witnesses probe it
    witness_timeout_s: float
    heartbeat_s: float
    round: VoteRound | None = None
    next_vote: float = 0.0  # a refused vote is not asked again before this

    def vote_due(self, nodes: Iterable[str], now: float) -> tuple[WitnessQuery, Event] | None:
        """A witness vote to start among `nodes` (those alive in our view), with its event; None
        while the peer is heard, we serve, a vote is open or a refused one's pause lasts."""
        if not self.star.should_vote(now) or self.round is not None or now < self.next_vote:
            return None
        asked = frozenset(nodes)
        proposed = next_epoch(self.star.role, self.star.epoch)
        timeout = self.witness_timeout_s
        self.round = VoteRound(asked, now + timeout)
        # A refused vote (the peer is alive for the majority) is not asked again at once.
        self.next_vote = now + timeout + self.heartbeat_s
        query = WitnessQuery(self.name, proposed, self.peer, round(0.6 * timeout, 3))
        return query, ("failover_vote", self.name, f"peer silent for {self.star.failover_after_s:g} s+; asking "
                                                   f"{len(asked)} witnesses for epoch {proposed}")

    def voted(self, node: str, granted: bool, epoch: int) -> None:
        if self.round is not None:
            self.round.add(node, granted, epoch)

    def decided(self, now: float) -> tuple[State | None, Event] | None:
        """The open vote's result once decided: the new state (None if refused) and its event."""
        vote = self.round
        outcome = None if vote is None else vote.outcome(now)
        if vote is None or outcome is None:
            return None
        self.round = None
        changed = self.star.on_vote(outcome, vote.epoch, now, vote.detail())
        if changed is None:
            why = vote.detail() if outcome else f"{vote.detail()}: the peer is alive for the majority"
            return None, ("failover_refused", self.name, why)
        return changed, self.transition(changed)

    def heard(self, state: str, epoch: int, now: float) -> tuple[State, Event] | None:
        """The peer's heartbeat: the new state and its event if ours changed."""
        changed = self.star.on_peer(state, epoch, now)
        return None if changed is None else (changed, self.transition(changed))

    def transition(self, state: State) -> Event:
        kind = "coordinator_active" if state is State.ACTIVE else "coordinator_passive"
        return kind, self.name, f"epoch={self.star.epoch};{self.star.reason}"

    def refusal(self) -> str:
        """The `not_active` answer's message: the load generator then asks the peer."""
        return f"coordinator {self.name} is {self.star.state} (epoch {self.star.epoch}): its peer {self.peer} serves"
