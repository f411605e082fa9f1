"""Hybrid mode: a gossip peer that refers the decisions needing a global view to a coordinator.

Hawk (Delgado et al., USENIX ATC 2015) and Eagle (Delgado et al., SoCC 2016) keep a central
scheduler for what needs the whole cluster and let distributed schedulers place the rest;
daemons/policy/hybrid.py holds the split's rules. `HybridMode` is `GossipMode` (same view,
same policies, same forwarding, admission queue and failure handling) with three changes:

- `decide`: the peer's own policy runs first; a choice that holds the model already
  (`peer_decides`) is the peer's (`decided_by = peer`), unless a node already failed to take
  the request (a retry, with exclusions). Anything else is referred to the
  coordinator: a `Schedule` on a DEALER to its request ROUTER, answered with its `Placement`
  (which the peer carries out: serve here or forward, with its action and epoch) or `Error`;
  a held request's `Progress` beats say the coordinator is alive (`decided_by = coordinator`).
- the coordinator's events PUB: its `CoordinatorState` heartbeats and its `ModelMap`. What
  the map says a node holds and its gossiped state (older than the map) does not show yet
  counts as a placement on its way there, so the requests that follow a coordinator's cold
  start stay with the peers.
- degraded mode: a referral unanswered for `referral_timeout_s`, a send the coordinator's
  socket cannot take (no connection), or heartbeats silent that long make the peer decide
  cold starts itself (`decided_by = peer-degraded`), keeping the last map; it announces a
  `hybrid_degraded` event (events.csv). The next heartbeat or answer ends it
  (`hybrid_recovered`), and it defers to the coordinator again.
- a failover pair (`standby`, `standby_events`): the peer hears both coordinators' events and
  refers to the one whose heartbeat last said active with the newest epoch (`Following`); a
  `not_active` answer sends the referral to the other at once. After a takeover the standby's
  heartbeats end the degraded spell and its map is the one followed.

The serving node echoes `Infer.decided_by` in `Done`, so requests.csv says per request which
path decided it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

import zmq
import zmq.asyncio

from daemons.bus import encode, make_socket, parse_frame
from daemons.bus.security import Security
from daemons.bus.status import status_reply
from daemons.core.messages import (
    ClusterEvent,
    CoordinatorState,
    Error,
    Infer,
    ModelMap,
    NodeState,
    Placement,
    Progress,
    Schedule,
    StatusReply,
)
from daemons.node.config import NodeConfig
from daemons.node.gossip_mode import GossipMode, HostNode
from daemons.policy import Decision, Refusal
from daemons.policy.hybrid import COORDINATOR, PATHS, PEER, PEER_DEGRADED, by_node, expected, peer_decides

log = logging.getLogger("schedctl.node.hybrid_mode")
WATCH_EVERY_S = 0.25  # how often heartbeat silence is checked
# Coordinator errors that say "not me": the peer decides, as with a silent coordinator.
NOT_DECIDING = frozenset({"not_active"})


def peer_mode(config: NodeConfig, ctx: zmq.asyncio.Context, node: HostNode,
              security: Security | None = None) -> GossipMode | None:
    """The node's peer for its `scheduler`: gossip, hybrid, or none (centralized)."""
    if config.scheduler == "hybrid":
        return HybridMode(config, ctx, node, security)
    if config.scheduler == "gossip":
        return GossipMode(config, ctx, node, security)
    return None


def referred(answer: Placement | Error) -> tuple[Decision | Refusal, int] | None:
    """The coordinator's answer to a referral as the peer's decision and its epoch; None when
    it says it does not decide (`not_active`): the peer then decides itself. Sans-IO: the
    simulated hybrid peer (daemons/sim/hybrid.py) takes its answers with it too."""
    if isinstance(answer, Placement):
        return Decision(answer.node, answer.endpoint, answer.action, answer.est_wait_s,
                        f"coordinator: {answer.reason}"), answer.epoch
    if answer.code in NOT_DECIDING:
        return None
    return Refusal(answer.code, answer.message), 0


@dataclass
class Standing:
    """Whether the coordinator counts as reachable: sans-IO, every clock reading passed in.

    `heard` (a heartbeat, a map or an answer) and `silent` (a referral unanswered, a send
    refused) return the event text of a change (None: no change); `check` is `silent` when
    nothing was heard for `timeout_s`."""

    timeout_s: float
    last_heard: float
    degraded: bool = False
    since: float = 0.0  # when the current degraded spell began

    def heard(self, now: float) -> str | None:
        self.last_heard = now
        if not self.degraded:
            return None
        self.degraded = False
        return f"coordinator answering again after {now - self.since:.1f} s degraded"

    def silent(self, now: float, why: str) -> str | None:
        if self.degraded:
            return None
        self.degraded, self.since = True, now
        return why

    def check(self, now: float) -> str | None:
        if now - self.last_heard <= self.timeout_s:
            return None
        return self.silent(now, f"no heartbeat from the coordinator for {now - self.last_heard:.1f} s")


@dataclass
class Following:
    """Which coordinator of a failover pair the peer refers to: sans-IO.

    `active` (a heartbeat saying active, or a map) follows its sender unless an older epoch
    says so (a deposed primary not yet told, failover.py); `refused` (`not_active`) turns to
    the other. Returns whether the one followed changed."""

    endpoints: tuple[str, ...]  # the coordinator first, then its standby (if any)
    current: str = ""
    epoch: int = 0

    def __post_init__(self) -> None:
        self.current = self.current or self.endpoints[0]

    def active(self, endpoint: str, epoch: int) -> bool:
        if endpoint not in self.endpoints or epoch < self.epoch:
            return False
        changed, self.current, self.epoch = endpoint != self.current, endpoint, epoch
        return changed

    def refused(self, endpoint: str) -> bool:
        others = [e for e in self.endpoints if e != endpoint]
        if endpoint != self.current or not others:
            return False
        self.current = others[0]
        return True


@dataclass
class Referral:
    """A request referred to the coordinator: its answer, once it comes, and when it last spoke."""

    answer: asyncio.Future[Placement | Error]
    heard: float


@dataclass
class Counts:
    decided: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    degraded_spells: int = 0
    maps: int = 0
    referrals: int = 0  # Schedules sent to a coordinator (a retry's counts again)


class HybridMode(GossipMode):
    """A gossip peer that refers cold starts, evictions and migrations to a coordinator."""

    def __init__(self, config: NodeConfig, ctx: zmq.asyncio.Context, node: HostNode,
                 security: Security | None = None, rng: random.Random | None = None) -> None:
        super().__init__(config, ctx, node, security, rng)
        self.standing = Standing(config.referral_timeout_s, time.monotonic())
        self.counts = Counts()
        self.map: ModelMap | None = None  # the last one heard: kept while the coordinator is gone
        self._map_at = 0.0  # when it came (our clock)
        self._mapped: dict[str, tuple[str, ...]] = {}  # node -> models, by the map
        self._referrals: dict[str, Referral] = {}
        self._paths: dict[str, tuple[str, int]] = {}  # request id -> (decided_by, epoch) of its decision
        ends = (config.coordinator, *([config.standby] if config.standby else []))
        self.following = Following(ends)
        self._coordinators: dict[str, Any] = {}  # request ROUTER -> our DEALER to it
        # request ROUTER -> its events PUB: a frame's socket says who sent it, whatever its bind says
        self._event_ends = dict(zip(ends, (config.coordinator_events, config.standby_events), strict=False))
        self._events: list[Any] = []  # a SUB to each events PUB

    async def start(self) -> None:
        await super().start()
        for endpoint in self.following.endpoints:
            dealer = self._coordinators[endpoint] = make_socket(self.ctx, zmq.DEALER, curve=self.security.client)
            # No queueing for a coordinator that is not connected: the send fails and we decide.
            dealer.setsockopt(zmq.IMMEDIATE, 1)
            dealer.connect(endpoint)
            self._spawn(self._read_answers(dealer))
            sub = make_socket(self.ctx, zmq.SUB, curve=self.security.client)
            sub.connect(self._event_ends[endpoint])
            self._events.append(sub)
            self._spawn(self._read_events(endpoint, sub))
        self.standing.last_heard = time.monotonic()  # its first heartbeat gets a full timeout
        self._spawn(self._watch_heartbeats())

    async def stop(self) -> None:
        await super().stop()  # cancels our readers with the rest of the background tasks
        for sock in (*self._coordinators.values(), *self._events):
            sock.close(0)

    # ----- deciding --------------------------------------------------------------------
    async def decide(self, request: Infer, exclude: frozenset[str] = frozenset()) -> Decision | Refusal:
        """The peer's own choice when the model is warm on the chosen node; else the
        coordinator's; with the coordinator unreachable, the peer's again (degraded)."""
        decision = await self.choose(request, exclude)
        path = PEER
        epoch = 0
        if not peer_decides(self.view(self.node.local_state()), decision, request.model, exclude):
            path = PEER_DEGRADED
            if not self.standing.degraded:
                referred = await self._refer(request, exclude)
                if referred is not None:
                    path, (decision, epoch) = COORDINATOR, referred
                else:  # it did not answer: we decide, on the view as it is after the wait
                    decision = await self.choose(request, exclude)
        if isinstance(decision, Decision):
            self._count_pending(decision, request.model)
            self._paths[request.request_id] = (path, epoch)
        return decision

    def _prepared(self, request: Infer, decision: Decision) -> Infer:
        path, epoch = self._paths.pop(request.request_id, (PEER, 0))
        self.counts.decided[path] += 1
        return replace(request, decided_by=path, epoch=epoch or request.epoch)

    async def _refer(self, request: Infer, exclude: frozenset[str]) -> tuple[Decision | Refusal, int] | None:
        """The coordinator's decision (and its epoch) for `request`; None when it does not answer
        (then we are degraded). A request it holds in its queue waits as long as it says so."""
        rid = request.request_id
        ask = Schedule(rid, request.model, len(request.prompt.split()), request.max_new_tokens, request.priority,
                       sorted(exclude)[:256], 0.0, request.slo_ttft_s)
        for _ in self.following.endpoints:  # a passive one says so: then its partner, at once
            target = self.following.current
            referral = Referral(asyncio.get_running_loop().create_future(), time.monotonic())
            self._referrals[rid] = referral
            self.counts.referrals += 1
            try:
                try:
                    await self._coordinators[target].send(encode(ask, self.config.name, rid), flags=zmq.DONTWAIT)
                except zmq.ZMQError as exc:  # IMMEDIATE: no connection to the coordinator
                    self._degrade(f"cannot reach the coordinator {target} ({exc.strerror})")
                    return None
                answer = await self._answer(referral)
            finally:
                self._referrals.pop(rid, None)
            if not (isinstance(answer, Error) and answer.code in NOT_DECIDING and self.following.refused(target)):
                break
            log.info("hybrid: %s is not active: referring to %s", target, self.following.current)
        if answer is None:
            self._degrade(f"referral of {rid} unanswered for {self.config.referral_timeout_s:g} s")
            return None
        return referred(answer)

    async def _answer(self, referral: Referral) -> Placement | Error | None:
        timeout = self.config.referral_timeout_s
        while True:
            left = referral.heard + timeout - time.monotonic()
            if left <= 0:
                return None
            done, _ = await asyncio.wait({referral.answer}, timeout=left)
            if done:
                return referral.answer.result()

    # ----- the coordinator's sockets -----------------------------------------------------
    async def _read_answers(self, dealer: Any) -> None:
        while True:
            env = parse_frame(await dealer.recv(), "coordinator")
            if env is None:
                continue
            now = time.monotonic()
            self._heard(now)
            referral = self._referrals.get(env.id)
            if referral is None:
                continue  # a late answer: we decided without it
            if isinstance(env.body, Progress):
                referral.heard = now
            elif isinstance(env.body, (Placement, Error)) and not referral.answer.done():
                referral.answer.set_result(env.body)

    async def _read_events(self, endpoint: str, sub: Any) -> None:
        """`endpoint`'s heartbeats and maps (the coordinator publishes maps only while active)."""
        while True:
            env = parse_frame(await sub.recv(), "coordinator events")
            if env is None:
                continue
            body = env.body
            if not isinstance(body, CoordinatorState | ModelMap) or \
                    (isinstance(body, CoordinatorState) and body.state != "active"):
                continue
            if self.following.active(endpoint, body.epoch):
                log.warning("hybrid: following coordinator %s (epoch %d)", endpoint, body.epoch)
            if endpoint != self.following.current:
                continue  # a deposed coordinator that has not heard yet
            self._heard(time.monotonic())
            if isinstance(body, ModelMap):
                self._take_map(body)

    def _take_map(self, new: ModelMap) -> None:
        self.map, self._map_at, self._mapped = new, time.monotonic(), by_node(new.models)
        self.counts.maps += 1
        self._view_changed.set()  # a held request's model may be warm somewhere now

    def _expected(self, state: NodeState, record_age_s: float | None) -> list[str]:
        """What the map says `state`'s node holds and its state (older than the map) does not show."""
        mapped = self._mapped.get(state.node)
        if not mapped:
            return []
        return expected(mapped, (m.model for m in state.models), time.monotonic() - self._map_at, record_age_s)

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            why = self.standing.check(time.monotonic())
            if why is not None:
                self._announce_degraded(why)

    def _heard(self, now: float) -> None:
        back = self.standing.heard(now)
        if back is not None:
            log.warning("hybrid: %s: deferring to it again", back)
            self.node.announce(ClusterEvent("hybrid_recovered", self.config.name, self._detail(back), time.time()))

    def _degrade(self, why: str) -> None:
        if self.standing.silent(time.monotonic(), why) is not None:
            self._announce_degraded(why)

    def _announce_degraded(self, why: str) -> None:
        self.counts.degraded_spells += 1
        log.warning("hybrid: degraded: %s: deciding cold starts here, on the last map", why)
        self.node.announce(ClusterEvent("hybrid_degraded", self.config.name, self._detail(why), time.time()))

    def _detail(self, why: str) -> str:
        # `by=` first: the collector admits a node's event only about itself (daemons/bus/authz.py).
        return f"by={self.config.name};coordinator={self.following.current};{why}"

    def status_reply(self, info: dict[str, Any]) -> StatusReply:
        reply = super().status_reply(info)
        hybrid = {"scheduler": "hybrid", "degraded": self.standing.degraded, "decided": dict(self.counts.decided),
                  "degraded_spells": self.counts.degraded_spells, "maps": self.counts.maps,
                  "referrals": self.counts.referrals,
                  "map_models": len(self.map.models) if self.map is not None else 0,
                  "following": self.following.current, "following_epoch": self.following.epoch}
        return status_reply(reply.role, reply.nodes, {**reply.info, **hybrid})
