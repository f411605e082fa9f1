"""Gossip mode: the node is a peer that learns the cluster by gossip and places requests.

Everything gossip mode does on a node lives here, in `GossipMode`; it reaches back into the
node's serving path through one narrow interface, `HostNode` (its state now, serve a
request here, send a frame to a client, publish a verdict), and the node calls it for
the gossip-mode steps of its own loop (place a request that arrived here, answer a probe,
relay a cancel, its state changed, status).

A request from the load generator (`Infer` with no action) is placed from this peer's
own view by a decentralized policy (daemons/policy/peer.py): served here, or forwarded
once to a better peer, whose answers are relayed back to the load generator unchanged.
A forwarded request carries the chosen action, so its receiver serves it: a request
travels at most `max_hops` hops. Our view may be stale: a node that turns out not to have
room (we, or a peer that refuses with `no_capacity` / `overloaded`) is excluded and the
request placed again, up to MAX_PLACEMENTS nodes. Requests forwarded to a peer that gossip
declares dead fail at once with `peer_dead` instead of hanging; sooner still, a peer whose
connection drops (its process died: kill -9, crash, stop) gets the requests forwarded to
it placed again elsewhere at once, long before gossip can suspect it; the client then hears
a `Reassigned` naming the lost peer, so it takes the new server's answers as its own.
Progress frames of a forwarded request are relayed like its tokens; a `Cancel` naming
another peer is sent on to that peer (the load generator cancels the loser of a race).

Sparrow (`gossip_policy = "sparrow"`, daemons/policy/sparrow.py): the policy names the
peers to probe, and its sans-IO `ProbeRace` and `ProbeHold` say which reply wins and when a
probed peer answers; this module only sends the `Probe`s, hands each `ProbeReply` to the
race, and, probed itself, steps the hold at each of its state changes (the simulated peer,
daemons/sim/peer.py, drives the same two on its virtual clock).

Admission: a request no peer in our view can take now (the policy refuses, but a live peer
could hold the model once memory frees) waits in this peer's admission queue
(daemons/policy/admission.py: per model, in arrival order, `queue_limit`,
`queue_timeout_s`) and is placed again, head of its model first, whenever our view changes
(our own state, a gossiped record, a membership event) and at least every RETRY_S. It
leaves with `overloaded` (queue full) or `queue_timeout` (deadline), never silently. While
it waits, its asker hears a `Progress` with no tokens every PROGRESS_EVERY_S, so its
silence timer does not send the request elsewhere meanwhile.

Failure verdicts: every time this peer's memberlist judges another member — SUSPECT,
DEAD, or alive again (a refuted suspicion, or a restart rejoining with a new generation) —
the node is asked to `announce` a `ClusterEvent` (kinds `suspect`, `dead`, `alive`; detail
`by=<us>;incarnation=<n>[;accuser=<first accuser>|;restarted]`), which it publishes on its
state PUB so the experiment's collector logs each peer's own observation.

Hybrid mode (daemons/node/hybrid_mode.py) is this class with three hooks overridden: `decide`
(refer what is not warm to the coordinator), `_prepared` (mark who decided a request) and
`_expected` (models the coordinator's map says a peer holds, not yet in its gossip record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from daemons.bus import encode, make_socket, parse_frame
from daemons.bus.security import Security, SecurityConfig
from daemons.bus.status import status_reply
from daemons.core.errors import SchemaError
from daemons.core.messages import (
    Cancel,
    ClusterEvent,
    Error,
    Infer,
    NodeState,
    Probe,
    ProbeReply,
    Progress,
    Reassigned,
    StatusReply,
)
from daemons.core.schema import from_dict, to_dict
from daemons.gossip.agent import GossipAgent, MemberView
from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import EventKind, MemberEvent
from daemons.node.config import PROGRESS_EVERY_S, NodeConfig
from daemons.policy import NO_NODES, ClusterView, Decision, NodeView, PeerPolicy, PlacementRequest, Refusal, get_policy
from daemons.policy.admission import QUEUE_TIMEOUT, AdmissionQueue, QueueLimits
from daemons.policy.capacity import worth_waiting
from daemons.policy.peer import SPARROW
from daemons.policy.slo import admit as admit_slo
from daemons.policy.sparrow import Move, ProbeRace, ProbeRound, Sparrow, probe_reply
from daemons.policy.view import node_view, rebuilt_view

log = logging.getLogger("schedctl.node.gossip_mode")
SETTLE_S = 1.5  # our placements count as load on a peer until its gossiped state shows them
RETRY_S = 0.5  # a held request is offered to the policy again at least this often
MAX_PLACEMENTS = 3  # nodes tried for one request before giving up
REFUSALS = ("no_capacity", "overloaded")  # a peer that cannot take it: try another


class SentPlacements:
    """The placements a peer sent each node, counted as load there for SETTLE_S: until the
    node's gossiped state shows them. The node agent and the simulator's peers (daemons/sim/peer.py)
    both keep one."""

    def __init__(self) -> None:
        self._by_node: dict[str, deque[tuple[float, str]]] = {}  # node -> (when, model) we sent it

    def add(self, node: str, model: str, now: float) -> None:
        self._by_node.setdefault(node, deque()).append((now, model))

    def models(self, node: str, now: float) -> list[str]:
        """The models of the placements sent to `node` within the last SETTLE_S."""
        queue = self._by_node.get(node)
        if not queue:
            return []
        while queue and queue[0][0] < now - SETTLE_S:
            queue.popleft()
        return [m for _, m in queue]

    def by_node(self, now: float) -> dict[str, list[str]]:
        """`models(node, now)` of every node we sent something to still unsettled: the pending
        of a whole view at once (a simulated peer builds one per placement; most nodes have none)."""
        sent = {node: self.models(node, now) for node in self._by_node}
        for node in [node for node, models in sent.items() if not models]:
            del self._by_node[node]  # settled: as if never sent (models() answers [] either way)
            del sent[node]
        return sent

    def clear(self) -> None:
        self._by_node.clear()


class HostNode(Protocol):
    """What gossip mode needs of the node agent it runs in: the one way back to it."""

    def local_state(self) -> NodeState:
        """This node's state now (its load, models, GPUs), as it would publish it."""
        ...

    async def serve_locally(self, client: bytes, request: Infer) -> bool:
        """Serve `request` here, its answers going to `client`; False, serving nothing,
        when the model can neither run nor be loaded here now (our view was stale)."""
        ...

    async def send(self, client: bytes, frame: bytes) -> None:
        """Send an encoded frame to one of the node's clients (by ROUTER identity)."""
        ...

    def announce(self, event: ClusterEvent) -> None:
        """Publish a failure verdict for observers (the node's state PUB)."""
        ...


@dataclass
class Forward:
    """A request we forwarded: whose it is, where it went, and who was tried so far."""

    client: bytes
    peer: str
    request: Infer
    tried: frozenset[str]
    endpoint: str = ""  # the peer's


class GossipMode:
    """A node's gossip-mode peer: its membership view, and every request it places.

    Owns the gossip agent (membership and the gossiped NodeState records), one DEALER
    link per peer it forwards or probes to (with a connection monitor: a drop re-places
    what went there), the requests forwarded and not yet answered, the admission queue
    of requests waiting for room, and the probes in flight. The node calls `place` for
    each request that arrived without an action (`places`), `answer_probe`,
    `relay_cancel`, `publish` whenever its state changes, and `status_reply`; all the
    re-placing (a refusal, a dropped link, a dead peer) happens in here.
    """

    def __init__(self, config: NodeConfig, ctx: zmq.asyncio.Context, node: HostNode,
                 security: Security | None = None, rng: random.Random | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.node = node
        self.security = security or Security(SecurityConfig())
        self.rng = rng or peer_rng(config.seed, config.name)
        self.policy = get_policy(config.gossip_policy, "gossip", config.affinity)
        # A probed peer answers by Sparrow's rule whatever its own policy.
        self.sparrow: Sparrow = self.policy if isinstance(self.policy, Sparrow) else SPARROW
        self.queue: AdmissionQueue[None] = AdmissionQueue(QueueLimits(config.queue_limit, config.queue_timeout_s),
                                                          config.priority, config.priority_aging_s)
        # Gossip shares the node's context, so its ROUTER is checked by the node's ZAP handler.
        self.agent = GossipAgent(
            config.name, config.gossip_bind, advertise=config.gossip_advertise or None, seeds=config.seeds,
            config=replace(GossipConfig.preset(config.gossip_preset), max_members=config.gossip_max_members),
            ctx=ctx, curve_server=self.security.bind_server(), curve_client=self.security.client)
        self.agent.add_listener(self._on_member_event)
        self._links: dict[str, Any] = {}  # endpoint -> DEALER
        self._readers: list[asyncio.Task[None]] = []
        self._forwards: dict[str, Forward] = {}  # request_id -> where it went
        self._down: set[str] = set()  # peer endpoints whose connection dropped
        self._pending = SentPlacements()
        self._probes: dict[str, tuple[ProbeRace, asyncio.Event]] = {}  # request_id -> its round, woken by a win
        self._background: set[asyncio.Task[None]] = set()
        self._view_changed = asyncio.Event()
        self._published = asyncio.Event()  # our own state changed (a slot may have freed)
        self._first_waited: OrderedDict[str, float] = OrderedDict()  # request id -> when

    # ----- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        await self.agent.start()

    @property
    def bound(self) -> str:
        """The gossip endpoint really bound (the agent's transport, once started)."""
        return self.agent.bound

    async def stop(self) -> None:
        for task in [*self._readers, *self._background]:
            task.cancel()
        await asyncio.gather(*self._readers, *self._background, return_exceptions=True)
        for sock in self._links.values():
            sock.disable_monitor()
            sock.close(0)
        await self.agent.stop()

    def publish(self, state: NodeState) -> None:
        """The node published `state`: gossip it, and wake whoever waits for a change."""
        self.agent.update_local_record(to_dict(state))
        self._view_changed.set()
        self._published.set()

    # ----- the view --------------------------------------------------------------------
    def view(self, me: NodeState) -> ClusterView:
        now = time.monotonic()
        members = [(m, s) for m in self.agent.view() if not m.is_self and (s := _state_of(m)) is not None]
        # hybrid mode: what the coordinator's map says a node will hold, beyond its gossiped state
        expected = {s.node: self._expected(s, m.record_age_s) for m, s in members}
        others = ((s, m.status == "alive") for m, s in members)
        return peer_view(me, others, lambda node: self._pending.models(node, now) + expected.get(node, []))

    def _expected(self, state: NodeState, record_age_s: float | None) -> list[str]:
        """Models a peer will hold that its gossiped `state` does not show yet (hybrid mode:
        the coordinator's map); a gossip peer knows of none."""
        return []

    def status_reply(self, info: dict[str, Any]) -> StatusReply:
        """Our view of the members (each with its gossiped record) and the queue's counters."""
        rows = []
        for m in self.agent.view():
            record = dict(m.record) if m.record else {}
            rows.append({**record, "node": m.node, "alive": m.status == "alive", "status": m.status,
                         "record_age_s": m.record_age_s, "gossip_addr": m.addr})
        return status_reply("gossip-peer", rows, {**info, **self.queue.status()})  # cut to the frame limit

    # ----- placing -----------------------------------------------------------------------
    def places(self, request: Infer) -> bool:
        """Whether we place `request` rather than serve it as asked: it came with no action
        (from the load generator, not placed by a peer) and may still travel a hop."""
        return not request.action and request.hops < self.config.max_hops

    async def place(self, client: bytes, request: Infer, tried: frozenset[str] = frozenset()) -> None:
        """Place a request from our view: serve it here or forward it to a peer, answering
        `client` with an Error when no node in MAX_PLACEMENTS can take it.

        Our view may be stale: a node that turns out not to have room (here, or a peer
        that refuses) is excluded and the request placed again.
        """
        rid, me = request.request_id, self.config.name
        while len(tried) < MAX_PLACEMENTS:
            decision = await self._admit_beating(client, request, tried)  # waits while nothing fits
            if isinstance(decision, Refusal):
                break
            if decision.node != me:
                await self._forward(client, request, decision, tried)
                return
            if await self.node.serve_locally(client, self._prepared(request, decision)):
                return
            tried = tried | {me}
        why = f"no peer could take it (tried {', '.join(sorted(tried)) or 'none'})"
        code = decision.code if isinstance(decision, Refusal) else "no_capacity"
        message = decision.message if isinstance(decision, Refusal) else why
        await self._say(client, Error(rid, code, message, me), rid)

    def _place_again(self, forward: Forward) -> None:
        self._spawn(self.place(forward.client, forward.request, forward.tried))

    async def _admit_beating(self, client: bytes, request: Infer, tried: frozenset[str]) -> Decision | Refusal:
        """`admit`, telling the asker every PROGRESS_EVERY_S that the request waits here."""
        rid = request.request_id

        async def beat() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY_S)
                await self._say(client, Progress(rid, self.config.name, 0), rid)

        beating = asyncio.create_task(beat())
        try:
            return await self.admit(request, tried)
        finally:
            beating.cancel()

    async def admit(self, request: Infer, exclude: frozenset[str] = frozenset()) -> Decision | Refusal:
        """`decide`, but a request that may fit later waits in the admission queue for its turn.

        Returns a Decision, or a Refusal: the policy's when waiting cannot help, `overloaded`
        when the model's queue is full, `queue_timeout` at the deadline.
        """
        decision = await self.decide(request, exclude)
        if isinstance(decision, Decision) or decision.code != NO_NODES:
            return decision
        rid = request.request_id
        # Exclusions come from a view that turned out stale (a peer, or we, could not take it
        # after all); once the view changes every peer may be asked again, so they do not count.
        if not worth_waiting(self.view(self.node.local_state()), _placement(request, frozenset())):
            return decision
        now = time.monotonic()
        left = self._deadline(rid, now) - now
        if left <= 0:  # placed from the queue before, not taken after all, and out of time now
            return Refusal(QUEUE_TIMEOUT, f"waited {self.queue.limits.timeout_s:g} s for capacity for "
                                          f"{request.model}: lower the load, add nodes or raise queue_timeout_s")
        refused = self.queue.offer(rid, request.model, None, now, left, request.priority)
        if refused is not None:
            return Refusal(refused.code, refused.message)
        log.info("%s waits for capacity (%d waiting)", rid, len(self.queue), extra={"SCHEDCTL_REQUEST_ID": rid})
        try:
            return await self._wait_for_turn(request)
        finally:
            self.queue.remove(rid, placed=False)  # still here only if we were cancelled
            self._view_changed.set()  # the next request of the model gets its turn

    def _deadline(self, rid: str, now: float) -> float:
        """When `rid` must leave the queue: `queue_timeout_s` after it first waited here, however
        often it is placed and not taken after all (its first wait is remembered that long)."""
        first = self._first_waited
        while first and next(iter(first.values())) < now - self.queue.limits.timeout_s:
            first.popitem(last=False)
        return first.setdefault(rid, now) + self.queue.limits.timeout_s

    async def _wait_for_turn(self, request: Infer) -> Decision | Refusal:
        rid = request.request_id
        while True:
            late = self.queue.expire_one(rid, time.monotonic())
            if late is not None:
                return Refusal(late.code, late.message)
            entry = self.queue.get(rid)
            assert entry is not None
            self._view_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._view_changed.wait(),
                                       max(0.0, min(RETRY_S, entry.deadline - time.monotonic())))
            if not self.queue.is_head(rid):
                continue
            # The view has changed since the exclusions were made: every peer may be asked again.
            decision = await self.decide(request)
            if isinstance(decision, Decision):
                self.queue.remove(rid)
                log.info("%s placed after %.2f s in the queue: %s %s", rid, time.monotonic() - entry.arrived,
                         decision.node, decision.action, extra={"SCHEDCTL_REQUEST_ID": rid})
                return decision

    async def decide(self, request: Infer, exclude: frozenset[str] = frozenset()) -> Decision | Refusal:
        """The policy's decision on our view now (after its probe step, if it has one); a
        decision for a peer counts as load there until its gossiped state shows it."""
        decision = await self.choose(request, exclude)
        self._count_pending(decision, request.model)
        return decision

    def _count_pending(self, decision: Decision | Refusal, model: str) -> None:
        if isinstance(decision, Decision) and decision.node != self.config.name:
            self._pending.add(decision.node, model, time.monotonic())

    def _prepared(self, request: Infer, decision: Decision) -> Infer:
        """The request as it is served here or forwarded for `decision` (hybrid mode marks
        who decided it); the gossip peer sends it unchanged."""
        return request

    async def choose(self, request: Infer, exclude: frozenset[str] = frozenset()) -> Decision | Refusal:
        """The policy's decision on our view now (after its probe step, if it has one)."""
        me = self.node.local_state()
        view, placement = self.view(me), _placement(request, exclude)
        decision: Decision | Refusal | None = None
        if isinstance(self.policy, Sparrow):
            probes = self.policy.probes(view, placement, self.rng, me.node)
            if probes is not None:
                decision = await self._probe_round(probes, request)
        return peer_decide(self.policy, view, placement, self.rng, me.node, self.config.admission, decision)

    # ----- probes (Sparrow's I/O) ----------------------------------------------------------
    async def _probe_round(self, probes: ProbeRound, request: Infer) -> Decision | None:
        """Probe `probes`' peers for `request`: the decision of the first to answer in time, or
        None (the race's rule, daemons/policy/sparrow.py ProbeRace; we only send and wait)."""
        race = probes.start(time.monotonic())
        answered = asyncio.Event()
        self._probes[request.request_id] = (race, answered)
        probe = encode(Probe(request.request_id, request.model), self.config.name, request.request_id)
        for endpoint in probes.endpoints:
            with contextlib.suppress(zmq.Again):
                await self._link(endpoint).send(probe, flags=zmq.DONTWAIT)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), max(0.0, race.deadline - time.monotonic()))
            return race.decision()
        finally:
            self._probes.pop(request.request_id, None)

    async def answer_probe(self, client: bytes, probe: Probe) -> None:
        """A peer probes us: answer, wait for our next state change, or give up, as the held
        probe says (daemons/policy/sparrow.py ProbeHold: within `hold_s`, once a slot is free)."""
        hold = self.sparrow.hold(time.monotonic())
        while True:
            self._published.clear()  # before reading the state: a change after it still wakes us
            state = self.node.local_state()
            move = hold.step(state.in_flight, time.monotonic())
            if move is Move.GIVE_UP:
                return
            if move is Move.ANSWER:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), max(0.0, hold.deadline - time.monotonic()))
        await self._say(client, probe_reply(probe, state), probe.request_id)

    # ----- forwarding ------------------------------------------------------------------------
    async def _forward(self, client: bytes, request: Infer, decision: Decision, tried: frozenset[str]) -> None:
        """Send `request` on to the chosen peer; its answers come back through `_relay`."""
        onward = replace(self._prepared(request, decision), action=decision.action, hops=request.hops + 1,
                         route=[*request.route, self.config.name])
        self._forwards[request.request_id] = Forward(client, decision.node, request, tried | {decision.node},
                                                     decision.endpoint)
        log.debug("forwarding %s to %s (%s)", request.request_id, decision.node, decision.reason,
                  extra={"SCHEDCTL_REQUEST_ID": request.request_id, "SCHEDCTL_NODE": decision.node,
                         "SCHEDCTL_ACTION": decision.action})
        try:
            await self._link(decision.endpoint).send(encode(onward, self.config.name, request.request_id),
                                                     flags=zmq.DONTWAIT)
        except zmq.Again:
            self._forwards.pop(request.request_id, None)
            await self._fail(client, request.request_id, "forward_failed", f"peer {decision.node} is not accepting")
            return
        if decision.endpoint in self._down:  # it died since our view was made: do not wait for gossip
            self._place_elsewhere(decision.endpoint)

    def _link(self, endpoint: str) -> Any:
        sock = self._links.get(endpoint)
        if sock is None:
            sock = self._links[endpoint] = make_socket(self.ctx, zmq.DEALER, curve=self.security.client)
            sock.connect(endpoint)
            monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
            self._readers.append(asyncio.create_task(self._relay(sock, endpoint)))
            self._readers.append(asyncio.create_task(self._watch(monitor, endpoint)))
        return sock

    async def _watch(self, monitor: Any, endpoint: str) -> None:
        """Connection events of one peer link: a drop re-places what was forwarded there."""
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())["event"]
                if event == zmq.EVENT_CONNECTED:
                    self._down.discard(endpoint)
                elif event == zmq.EVENT_DISCONNECTED:
                    self._down.add(endpoint)
                    self._place_elsewhere(endpoint)
        finally:
            monitor.close(0)

    def _place_elsewhere(self, endpoint: str) -> None:
        for rid, forward in list(self._forwards.items()):
            if forward.endpoint == endpoint:
                del self._forwards[rid]
                log.warning("connection to %s dropped: placing %s again", forward.peer, rid,
                            extra={"SCHEDCTL_REQUEST_ID": rid, "SCHEDCTL_NODE": forward.peer})
                # Before the new placement's answers: the client learns they are not a duplicate.
                lost = Reassigned(rid, forward.peer, f"connection to {forward.peer} dropped")
                self._spawn(self._say(forward.client, lost, rid))
                self._place_again(forward)

    def relay_cancel(self, cancel: Cancel) -> None:
        """Send a Cancel on to the peer it names (the one we forwarded it to, else by our view)."""
        forward = self._forwards.get(cancel.request_id)
        endpoint = ""
        if forward is not None and forward.peer == cancel.node:
            del self._forwards[cancel.request_id]  # the loser's last words are not wanted
            endpoint = forward.endpoint
        else:
            for member in self.agent.view():
                state = None if member.is_self or member.node != cancel.node else _state_of(member)
                endpoint = state.endpoint if state is not None else endpoint
        if not endpoint:
            log.debug("cancel of %s for unknown peer %s dropped", cancel.request_id, cancel.node)
            return
        self._spawn(self._send_to(endpoint, encode(cancel, self.config.name, cancel.request_id)))

    async def _send_to(self, endpoint: str, frame: bytes) -> None:
        with contextlib.suppress(zmq.ZMQError):  # a peer not reading: it gets nothing new from us either
            await self._link(endpoint).send(frame, flags=zmq.DONTWAIT)

    async def _relay(self, sock: Any, endpoint: str) -> None:
        """Answers from a peer: probe replies resolve probes, the rest go to our client."""
        while True:
            frame = await sock.recv()
            env = parse_frame(frame, endpoint)
            if env is None:
                continue
            if isinstance(env.body, ProbeReply):
                probing = self._probes.get(env.body.request_id)
                if probing is not None and probing[0].reply(endpoint, time.monotonic()):
                    probing[1].set()
                continue
            forward = self._forwards.get(env.id)
            if forward is None:
                continue  # late answer of a request we already failed
            if env.type in ("done", "error"):
                del self._forwards[env.id]
            if isinstance(env.body, Error) and env.body.code in REFUSALS:
                # Our view was stale (the peer is full or busy): place it again elsewhere.
                log.info("%s refused %s (%s): placing it again", forward.peer, env.id, env.body.code)
                self._place_again(forward)
                continue
            await self.node.send(forward.client, frame)

    # ----- answering our clients ---------------------------------------------------------------
    async def _say(self, client: bytes, body: Any, rid: str) -> None:
        await self.node.send(client, encode(body, self.config.name, rid))

    async def _fail(self, client: bytes, request_id: str, code: str, message: str, node: str = "") -> None:
        """Fail a request to our client; `node` names the node that failed it (default: us)."""
        await self._say(client, Error(request_id, code, message, node or self.config.name), request_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----- membership --------------------------------------------------------------------------
    def _on_member_event(self, event: MemberEvent) -> None:
        self._view_changed.set()  # a record or a verdict: held requests may fit now
        self._report_verdict(event)
        if event.kind not in (EventKind.DEAD, EventKind.LEFT):
            return
        for rid, forward in list(self._forwards.items()):
            if forward.peer == event.node:
                del self._forwards[rid]
                why = f"{event.node} was declared {event.kind} while serving this request"
                self._spawn(self._fail(forward.client, rid, "peer_dead", why, forward.peer))

    def _report_verdict(self, event: MemberEvent) -> None:
        verdict = verdict_event(event, self.config.name, time.time())
        if verdict is None:
            return
        # DEAD is what fails requests and what an operator looks for; the rest is routine.
        level = logging.WARNING if verdict.kind == "dead" else logging.INFO
        log.log(level, "gossip verdict: %s is %s (%s)", verdict.node, verdict.kind, verdict.detail,
                extra={"SCHEDCTL_NODE": verdict.node})
        self.node.announce(verdict)


def peer_rng(seed: int, node: str) -> random.Random:
    """The random stream of `node`'s placement policy: its own per peer (peers sharing one
    stream would herd onto the same samples), repeatable from `[node] seed`. The simulator's
    peers (daemons/sim/peer.py) draw from the same streams, so a simulated and a real run of
    one spec make the same random choices wherever their views agree (common random
    numbers: their differences are then the model's, not the dice's)."""
    return random.Random(f"{seed}:{node}")


def peer_view(me: NodeState, others: Iterable[tuple[NodeState, bool]], pending: Callable[[str], list[str]],
              view_of: Callable[[NodeState, bool, list[str]], NodeView] = node_view,
              previous: ClusterView | None = None) -> ClusterView:
    """A peer's ClusterView: itself (alive), each other member's gossiped state (alive or not),
    and the placements it sent each node that their state does not show yet (`pending`).
    The simulator's peers (daemons/sim/peer.py) build theirs with it too (`view_of`: a
    `node_view` that remembers the views it made, shared by its thousands of peers; `previous`:
    the peer's last view, patched where most of its NodeViews are the same objects again)."""
    nodes = [view_of(me, True, pending(me.node))]
    nodes.extend(view_of(state, alive, pending(state.node)) for state, alive in others)
    return rebuilt_view(previous, nodes)


def peer_decide(policy: PeerPolicy, view: ClusterView, placement: PlacementRequest, rng: random.Random, me: str,
                admission: str, probed: Decision | Refusal | None = None) -> Decision | Refusal:
    """A peer's decision: the probe step's answer if it had one, else the policy's on `view`;
    shed with `--admission slo` when it misses the request's SLO."""
    decision = probed if probed is not None else policy(view, placement, rng, me)
    return admit_slo(decision, placement, admission)


# Memberlist events that are failure verdicts, under the kind events.csv gives them.
VERDICTS = {EventKind.SUSPECT: "suspect", EventKind.DEAD: "dead", EventKind.ALIVE_AGAIN: "alive"}


def verdict_event(event: MemberEvent, observer: str, wall_s: float) -> ClusterEvent | None:
    """`observer`'s verdict about another member as a ClusterEvent, or None for other events.

    A JOINED of a new generation of a known member counts as `alive` (it came back by
    restarting); a first JOINED, records, leaves and reaping are not verdicts: a graceful
    leave is no failure, and every teardown would otherwise log N x (N - 1) of them.
    """
    if event.node == observer:
        return None
    if event.kind is EventKind.JOINED and event.restarted:
        kind, extra = "alive", ";restarted"
    elif event.kind in VERDICTS:
        kind = VERDICTS[event.kind]
        extra = f";accuser={event.origin}" if event.origin and kind != "alive" else ""
    else:
        return None
    return ClusterEvent(kind, event.node, f"by={observer};incarnation={event.inc}{extra}", wall_s)


def _placement(request: Infer, exclude: frozenset[str]) -> PlacementRequest:
    return PlacementRequest(request.model, len(request.prompt.split()), request.max_new_tokens, request.priority,
                            exclude, request.slo_ttft_s)


def _state_of(member: MemberView) -> NodeState | None:
    if member.record is None:
        return None
    try:
        state = from_dict(NodeState, dict(member.record), f"record of {member.node}")
    except SchemaError as exc:
        log.warning("ignoring malformed gossip record: %s", exc)
        return None
    # A member's record speaks for that member only: one naming another node would
    # redirect that node's placements (daemons/bus/authz.py).
    return state if state.node == member.node else None

