"""A simulated hybrid peer: the gossip peer of peer.py that refers cold starts to the coordinator.

The real one is `HybridMode` (daemons/node/hybrid_mode.py); the rules are the same functions:

- the peer's own policy chooses first; a choice that holds the model already
  (`peer_decides`, daemons/policy/hybrid.py) is the peer's (`decided_by = peer`), unless
  a node already failed to take it (a retry goes to the coordinator, excluding the nodes tried);
- anything else is referred to the simulated coordinator as a Schedule over the wire, and
  its answer taken with `referred` (a Placement is carried out: `decided_by = coordinator`);
  its Progress beats keep the referral alive, as the real peer's `_answer` does;
- degraded (`Standing`): a referral unanswered for `referral_timeout_s`, a coordinator whose
  process is gone (the real DEALER's IMMEDIATE send fails at once), or heartbeats silent that
  long; the peer then decides cold starts itself (`decided_by = peer-degraded`) and announces
  `hybrid_degraded`; the next heartbeat, map or answer ends it (`hybrid_recovered`);
- the coordinator's map (`ModelMap`): what it says a node holds and the node's gossiped
  record (older than the map) does not show counts as a placement on its way (`expected`);
- a Sparrow peer's choice comes after its probes (peer.py): the steps above then go on when
  its round ends, as the real `decide` does after its `choose` returns.

- a failover pair (a standby): the peer refers to the coordinator it follows (`Following`):
  the one whose heartbeat last said active with the newest epoch; a `not_active` answer sends
  the referral to the other at once; a coordinator's decision carries its epoch to the node,
  which fences a deposed one's (daemons/node/fencing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemons.core.messages import Error, NodeState, Placement, Progress
from daemons.node.config import PROGRESS_EVERY_S
from daemons.node.hybrid_mode import NOT_DECIDING, WATCH_EVERY_S, Following, Standing, referred
from daemons.policy import ClusterView, Decision, PlacementRequest, Refusal
from daemons.policy.hybrid import COORDINATOR, PATHS, PEER, PEER_DEGRADED, by_node, expected, peer_decides
from daemons.sim.coordinator import Ask
from daemons.sim.peer import Member, Placing, SimPeer

# (from peer, to coordinator, the Schedule) -> False when that coordinator is not connected
Refer = Callable[[str, str, Ask], bool]
Announce = Callable[[str, str, str], None]  # a ClusterEvent (kind, node, detail) to the collector


@dataclass
class Referral:
    placing: Placing
    request: PlacementRequest
    heard: float  # when the coordinator last spoke of it (sent, or a Progress)
    token: int  # this referral, not an earlier one of the same request
    to: str = ""  # the coordinator asked
    asks: int = 1  # coordinators asked so far (a passive one's partner is asked at once, once)


class SimHybridPeer(SimPeer):
    """`HybridMode` on the virtual clock. `configure` before the run: the referral path,
    the announcer and the referral timeout (NodeConfig.referral_timeout_s)."""

    def configure(self, refer: Refer, announce: Announce, referral_timeout_s: float,
                  coordinators: tuple[str, ...] = ("coordinator",)) -> None:
        """`coordinators`: the coordinator, then its standby if there is one."""
        self._refer_to, self._announce, self.timeout_s = refer, announce, referral_timeout_s
        self.coordinators = coordinators
        self.paths = dict.fromkeys(PATHS, 0)  # decisions per path (HybridMode.counts)
        self.degraded_spells = 0
        self._tokens = 0  # referrals sent, ever: a late answer never matches a later referral
        self._fresh()

    def _fresh(self) -> None:
        """A new process: no map, no referrals, a full timeout for the first heartbeat."""
        self.standing = Standing(self.timeout_s, self.clock.now)
        self.following = Following(self.coordinators)
        self._referrals: dict[str, Referral] = {}
        self._mapped: dict[str, tuple[str, ...]] = {}
        self._map_at = 0.0
        self._watching = False
        self._restarted = False
        self._watch()

    # ----- the view: gossip plus the coordinator's map ---------------------------------------------
    def pending(self, members: list[Member], now: float) -> Callable[[str], list[str]]:
        """HybridMode.view: ours, plus what the map says a node holds and its record (older
        than the map) does not show (`expected`)."""
        ours = super().pending(members, now)
        if not self._mapped:
            return ours
        map_age = now - self._map_at
        mapped = self._mapped
        # A node the map gives nothing is expected to hold nothing more (`expected` of no models).
        ahead = {s.node: expected(mapped[s.node], (x.model for x in s.models), map_age, age)
                 for s, _, age in members if s.node in mapped}
        return lambda node: ours(node) + ahead.get(node, [])

    # ----- deciding --------------------------------------------------------------------------------
    def decided(self, placing: Placing, request: PlacementRequest) -> Decision | Refusal | None:
        """HybridMode.decide: ours when warm; else the coordinator's (None: its answer comes
        later), or ours again when it cannot answer (degraded). A Sparrow peer's choice comes
        after its probes (None too; `resume` gets it)."""
        decision = self.choose(placing.asked.request_id, request,
                               lambda later: self.resume(placing, request, self._chosen(placing, request, later)))
        # Decided now: on the view choose() just made (`_last_view`), which nothing changed since.
        return None if decision is None else self._chosen(placing, request, decision, self._last_view)

    def _chosen(self, placing: Placing, request: PlacementRequest, decision: Decision | Refusal,
                view: ClusterView | None = None) -> Decision | Refusal | None:
        """The rest of HybridMode.decide once our policy has chosen (on `view`, when it is
        this instant's; None: the view now, for a choice that came later)."""
        if peer_decides(self.view() if view is None else view, decision, request.model, request.exclude):
            return self._taken(placing, decision, PEER, request.model)
        if not self.standing.degraded:
            if self._refer(placing, request):
                return None
            self._degrade("cannot reach the coordinator (no connection)")
            return self._ours(placing, request)  # the real peer decides again after its failed send
        return self._taken(placing, decision, PEER_DEGRADED, request.model)

    def _ours(self, placing: Placing, request: PlacementRequest) -> Decision | Refusal | None:
        """Our policy's decision, the coordinator having given none (`peer-degraded`); None while
        our probes are out (`resume` gets it)."""
        def taken(decision: Decision | Refusal) -> Decision | Refusal:
            return self._taken(placing, decision, PEER_DEGRADED, request.model)

        decision = self.choose(placing.asked.request_id, request,
                               lambda later: self.resume(placing, request, taken(later)))
        return None if decision is None else taken(decision)

    def head_decision(self, placing: Placing) -> Decision | Refusal | None:
        """A queue head (the peer queues only what it decides itself): warm or degraded, ours;
        a cold start while the coordinator answers goes to it afresh (None)."""
        decision = self.choose(placing.asked.request_id, placing.request,
                               lambda later: self.head_decided(placing, self._head_path(placing, later)))
        return None if decision is None else self._head_path(placing, decision, self._last_view)

    def _head_path(self, placing: Placing, decision: Decision | Refusal,
                   view: ClusterView | None = None) -> Decision | Refusal | None:
        if peer_decides(self.view() if view is None else view, decision, placing.request.model):
            return self._taken(placing, decision, PEER, placing.request.model)
        if isinstance(decision, Refusal) or self.standing.degraded:
            return self._taken(placing, decision, PEER_DEGRADED, placing.request.model)
        return None

    def _taken(self, placing: Placing, decision: Decision | Refusal, path: str, model: str) -> Decision | Refusal:
        self.count_pending(decision, model)
        if isinstance(decision, Decision):
            placing.decided_by = path
            self.paths[path] += 1
        return decision

    def holds(self, request_id: str) -> bool:
        return super().holds(request_id) or request_id in self._referrals

    # ----- referrals -------------------------------------------------------------------------------
    def _refer(self, placing: Placing, request: PlacementRequest, asks: int = 1) -> bool:
        rid = placing.asked.request_id
        self._tokens += 1
        to = self.following.current
        referral = self._referrals[rid] = Referral(placing, request, self.clock.now, self._tokens, to, asks)
        token, gen = referral.token, self.node.gen
        ask = Ask(rid, request, 0.0, lambda body: self._answered(rid, token, gen, body))
        if not self._refer_to(self.name, to, ask):
            del self._referrals[rid]
            return False
        self._referral_beat(rid, token)
        self._expire_after(rid, token, self.timeout_s)
        return True

    def _live(self, rid: str, token: int) -> Referral | None:
        referral = self._referrals.get(rid)
        return referral if referral is not None and referral.token == token and self.node.up else None

    def _answered(self, rid: str, token: int, gen: int, body: object) -> None:
        """The coordinator's answer reached us (HybridMode._read_answers)."""
        if gen != self.node.gen or not self.node.up:
            return
        self.heard()
        referral = self._live(rid, token)
        if referral is None:
            return  # a late answer: we decided without it
        if isinstance(body, Progress):
            referral.heard = self.clock.now
            return
        if not isinstance(body, Placement | Error):
            return
        del self._referrals[rid]
        if self._ask_partner(referral, body):
            return
        outcome = referred(body)
        if outcome is None:  # not deciding: ours, as when it is silent
            self._decide_here(referral)
            return
        placing = referral.placing
        placing.epoch = outcome[1]
        self.resume(placing, referral.request, self._taken(placing, outcome[0], COORDINATOR, referral.request.model))

    def _ask_partner(self, referral: Referral, body: Placement | Error) -> bool:
        """HybridMode._refer: a passive coordinator's `not_active` sends the referral to its
        partner at once (each coordinator asked once); True when it went there."""
        if not (isinstance(body, Error) and body.code in NOT_DECIDING) or \
                referral.asks >= len(self.following.endpoints) or not self.following.refused(referral.to):
            return False
        if self._refer(referral.placing, referral.request, referral.asks + 1):
            return True
        self._degrade(f"cannot reach the coordinator {self.following.current} (no connection)")
        return False

    def _expire_after(self, rid: str, token: int, delay_s: float) -> None:
        self.clock.after(delay_s, lambda: self._expire(rid, token))

    def _expire(self, rid: str, token: int) -> None:
        """HybridMode._answer: unanswered for the timeout since it last spoke: degraded, ours."""
        referral = self._live(rid, token)
        if referral is None:
            return
        left = referral.heard + self.timeout_s - self.clock.now
        if left > 1e-9:
            self._expire_after(rid, token, left)
            return
        del self._referrals[rid]
        self._degrade(f"referral of {rid} unanswered for {self.timeout_s:g} s")
        self._decide_here(referral)

    def _decide_here(self, referral: Referral) -> None:
        """HybridMode.decide after a referral that got no decision: ours, on the view as it is now."""
        self.resume(referral.placing, referral.request, self._ours(referral.placing, referral.request))

    def _referral_beat(self, rid: str, token: int) -> None:
        """GossipMode._admit_beating: the asker hears a Progress while the request is referred."""
        def beat() -> None:
            referral = self._live(rid, token)
            if referral is not None:
                referral.placing.asked.reply(Progress(rid, self.name, 0))
                self.clock.after(PROGRESS_EVERY_S, beat)
        self.clock.after(PROGRESS_EVERY_S, beat)

    # ----- the coordinator's events ----------------------------------------------------------------
    def heard(self) -> None:
        """A heartbeat, a map or an answer: the coordinator is there."""
        back = self.standing.heard(self.clock.now)
        if back is not None:
            self._announce("hybrid_recovered", self.name, self._detail(back))
            self._watch()

    def coordinator_active(self, coordinator: str, epoch: int) -> None:
        """A heartbeat saying active (HybridMode._read_events): followed unless its epoch is older."""
        if self._follows(coordinator, epoch):
            self.heard()

    def take_map(self, coordinator: str, epoch: int, models: dict[str, list[str]]) -> None:
        if not self._follows(coordinator, epoch):
            return
        self._mapped, self._map_at = by_node(models), self.clock.now
        self.heard()
        self.view_changed()  # a held request's model may be warm somewhere now

    def _follows(self, coordinator: str, epoch: int) -> bool:
        """Whether `coordinator` is the one followed after this word from it (a deposed one that
        has not heard yet is not)."""
        if not self.node.up:
            return False
        self.following.active(coordinator, epoch)
        return coordinator == self.following.current

    def _watch(self) -> None:
        """HybridMode._watch_heartbeats, checked when silence could have run out (not every
        WATCH_EVERY_S for each of thousands of peers); idle while degraded."""
        if self._watching or self.standing.degraded:
            return
        self._watching = True
        gen = self.node.gen
        due = max(self.standing.last_heard + self.timeout_s, self.clock.now) + WATCH_EVERY_S
        self.clock.at(due, lambda: self._check(gen))

    def _check(self, gen: int) -> None:
        if gen != self.node.gen or not self.node.up:
            return  # an earlier process's timer (a new one watches for itself)
        self._watching = False
        why = self.standing.check(self.clock.now)
        if why is not None:
            self._announce_degraded(why)
        self._watch()

    def _degrade(self, why: str) -> None:
        if self.standing.silent(self.clock.now, why) is not None:
            self._announce_degraded(why)

    def _announce_degraded(self, why: str) -> None:
        self.degraded_spells += 1
        self._announce("hybrid_degraded", self.name, self._detail(why))

    def _detail(self, why: str) -> str:
        return f"by={self.name};coordinator={self.following.current};{why}"

    def publish(self, state: NodeState) -> None:
        if self._restarted:  # the node's first state after a restart: a new peer process
            self._restarted = False
            self._fresh()
        super().publish(state)

    def kill(self) -> None:
        super().kill()
        self._referrals.clear()
        self._restarted = True

