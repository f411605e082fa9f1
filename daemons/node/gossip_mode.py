"""Gossip mode: the node is a peer that learns the cluster by gossip and places requests.

A request from the load generator (`Infer` with no action) is placed from this peer's
own view by a decentralized policy (daemons/policy/peer.py): served here, or forwarded
once to a better peer, whose answers are relayed back to the load generator unchanged.
A forwarded request carries the chosen action, so its receiver serves it: a request
travels at most `max_hops` hops. Requests forwarded to a peer that gossip declares dead
fail at once with `peer_dead` instead of hanging; sooner still, a peer whose connection
drops (its process died: kill -9, crash, stop) gets the requests forwarded to it placed
again elsewhere at once, long before gossip can suspect it; the client then hears a
`Reassigned` naming the lost peer, so it takes the new server's answers as its own.
Progress frames of a forwarded request are relayed like its tokens; a `Cancel` naming
another peer is sent on to that peer (the load generator cancels the loser of a race).

Sparrow (`gossip_policy = "sparrow"`): probe d candidate peers; each answers when it
has a free slot (immediately if its load is under the cap, else when a request finishes,
at most PROBE_WAIT_S later); the first answer wins. No answer in PROBE_TIMEOUT_S → the
power-of-d choice.

Admission: a request no peer in our view can take now (the policy refuses, but a live peer
could hold the model once memory frees) waits in this peer's admission queue
(daemons/policy/admission.py: per model, in arrival order, `queue_limit`,
`queue_timeout_s`) and is placed again, head of its model first, whenever our view changes
(our own state, a gossiped record, a membership event) and at least every RETRY_S. It
leaves with `overloaded` (queue full) or `queue_timeout` (deadline), never silently.

Failure verdicts: every time this peer's memberlist judges another member — SUSPECT,
DEAD, or alive again (a refuted suspicion, or a restart rejoining with a new generation) —
`announce` gets a `ClusterEvent` (kinds `suspect`, `dead`, `alive`; detail
`by=<us>;incarnation=<n>[;accuser=<first accuser>|;restarted]`), which the node publishes
on its state PUB so the experiment's collector logs each peer's own observation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from daemons.bus import encode, make_socket, parse_frame
from daemons.bus.security import Security, SecurityConfig
from daemons.core.errors import SchemaError
from daemons.core.messages import Cancel, ClusterEvent, Error, Infer, NodeState, Probe, ProbeReply, Reassigned
from daemons.core.schema import from_dict, to_dict
from daemons.gossip.agent import GossipAgent, MemberView
from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import EventKind, MemberEvent
from daemons.node.config import NodeConfig
from daemons.policy import NO_NODES, ClusterView, Decision, PeerPolicy, PlacementRequest, Refusal, get_policy
from daemons.policy.admission import QUEUE_TIMEOUT, AdmissionQueue, QueueLimits
from daemons.policy.capacity import worth_waiting
from daemons.policy.peer import QUEUE_CAP, sparrow_candidates
from daemons.policy.view import node_view

log = logging.getLogger("schedctl.node.peering")
SETTLE_S = 1.5  # our placements count as load on a peer until its gossiped state shows them
PROBE_TIMEOUT_S = 0.25
PROBE_WAIT_S = 0.5
RETRY_S = 0.5  # a held request is offered to the policy again at least this often

Reply = Callable[[bytes, bytes], Any]  # (client identity, raw frame) -> awaitable
Replace = Callable[[bytes, Infer, frozenset[str]], None]  # place again, avoiding these nodes
Announce = Callable[[ClusterEvent], None]  # publish a verdict for observers (the node's state PUB)
REFUSALS = ("no_capacity", "overloaded")  # a peer that cannot take it: try another


@dataclass
class Forward:
    client: bytes
    peer: str
    request: Infer
    tried: frozenset[str]
    endpoint: str = ""  # the peer's


@dataclass
class Peering:
    config: NodeConfig
    ctx: zmq.asyncio.Context
    reply: Reply
    replace: Replace
    security: Security = field(default_factory=lambda: Security(SecurityConfig()))
    announce: Announce = field(default=lambda _: None)  # a peer with no observers keeps its verdicts
    agent: GossipAgent = field(init=False)
    policy: PeerPolicy = field(init=False)
    rng: random.Random = field(default_factory=random.Random)
    _links: dict[str, Any] = field(default_factory=dict)  # endpoint -> DEALER
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    _forwards: dict[str, Forward] = field(default_factory=dict)  # request_id -> where it went
    _down: set[str] = field(default_factory=set)  # peer endpoints whose connection dropped
    _pending: dict[str, deque[tuple[float, str]]] = field(default_factory=dict)
    _probes: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    _failing: set[asyncio.Task[None]] = field(default_factory=set)
    queue: AdmissionQueue[None] = field(init=False)
    _view_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _first_waited: OrderedDict[str, float] = field(default_factory=OrderedDict)  # request id -> when

    def __post_init__(self) -> None:
        c = self.config
        self.queue = AdmissionQueue(QueueLimits(c.queue_limit, c.queue_timeout_s))
        # Gossip shares the node's context, so its ROUTER is checked by the node's ZAP handler.
        self.agent = GossipAgent(c.name, c.gossip_bind, advertise=c.gossip_advertise or None, seeds=c.seeds,
                                 config=replace(GossipConfig.preset(c.gossip_preset), max_members=c.gossip_max_members),
                                 ctx=self.ctx,
                                 curve_server=self.security.bind_server(), curve_client=self.security.client)
        self.policy = get_policy(c.gossip_policy, "gossip")
        self.agent.add_listener(self._on_member_event)

    async def start(self) -> None:
        await self.agent.start()

    @property
    def bound(self) -> str:
        """The gossip endpoint really bound (the agent's transport, once started)."""
        return self.agent.bound

    async def stop(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for sock in self._links.values():
            sock.disable_monitor()
            sock.close(0)
        await self.agent.stop()

    def publish(self, state: NodeState) -> None:
        self.agent.update_local_record(to_dict(state))
        self._view_changed.set()

    # ----- the view --------------------------------------------------------------------
    def view(self, me: NodeState) -> ClusterView:
        now = time.monotonic()
        nodes = [node_view(me, True, self._pending_models(me.node, now))]
        for member in self.agent.view():
            state = None if member.is_self else _state_of(member)
            if state is not None:
                nodes.append(node_view(state, member.status == "alive", self._pending_models(state.node, now)))
        return ClusterView.build(nodes)

    def _pending_models(self, node: str, now: float) -> list[str]:
        queue = self._pending.get(node)
        if not queue:
            return []
        while queue and queue[0][0] < now - SETTLE_S:
            queue.popleft()
        return [m for _, m in queue]

    def status_rows(self) -> list[dict[str, Any]]:
        rows = []
        for m in self.agent.view():
            record = dict(m.record) if m.record else {}
            rows.append({**record, "node": m.node, "alive": m.status == "alive", "status": m.status,
                         "record_age_s": m.record_age_s, "gossip_addr": m.addr})
        return rows

    # ----- placing -----------------------------------------------------------------------
    async def admit(self, request: Infer, snapshot: Callable[[], NodeState],
                    exclude: frozenset[str] = frozenset()) -> Decision | Refusal:
        """`place`, but a request that may fit later waits in the admission queue for its turn.

        Returns a Decision, or a Refusal: the policy's when waiting cannot help, `overloaded`
        when the model's queue is full, `queue_timeout` at the deadline.
        """
        decision = await self.place(request, snapshot(), exclude)
        if isinstance(decision, Decision) or decision.code != NO_NODES:
            return decision
        rid = request.request_id
        # Exclusions come from a view that turned out stale (a peer, or we, could not take it
        # after all); once the view changes every peer may be asked again, so they do not count.
        if not worth_waiting(self.view(snapshot()), _placement(request, frozenset())):
            return decision
        now = time.monotonic()
        left = self._deadline(rid, now) - now
        if left <= 0:  # placed from the queue before, not taken after all, and out of time now
            return Refusal(QUEUE_TIMEOUT, f"waited {self.queue.limits.timeout_s:g} s for capacity for "
                                          f"{request.model}: lower the load, add nodes or raise queue_timeout_s")
        refused = self.queue.offer(rid, request.model, None, now, left)
        if refused is not None:
            return Refusal(refused.code, refused.message)
        log.info("%s waits for capacity (%d waiting)", rid, len(self.queue), extra={"SCHEDCTL_REQUEST_ID": rid})
        try:
            return await self._wait_for_turn(request, snapshot)
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

    async def _wait_for_turn(self, request: Infer, snapshot: Callable[[], NodeState]) -> Decision | Refusal:
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
            decision = await self.place(request, snapshot())
            if isinstance(decision, Decision):
                self.queue.remove(rid)
                log.info("%s placed after %.2f s in the queue: %s %s", rid, time.monotonic() - entry.arrived,
                         decision.node, decision.action, extra={"SCHEDCTL_REQUEST_ID": rid})
                return decision

    async def place(self, request: Infer, me: NodeState, exclude: frozenset[str] = frozenset()) -> Decision | Refusal:
        view = self.view(me)
        placement = _placement(request, exclude)
        if self.config.gossip_policy == "sparrow":
            decision = await self._sparrow(view, placement, request, me.node)
        else:
            decision = self.policy(view, placement, self.rng, me.node)
        if isinstance(decision, Decision) and decision.node != me.node:
            self._pending.setdefault(decision.node, deque()).append((time.monotonic(), request.model))
        return decision

    async def _sparrow(self, view: ClusterView, placement: PlacementRequest, request: Infer,
                       me: str) -> Decision | Refusal:
        options = [o for o in sparrow_candidates(view, placement, self.rng) if o.node.name != me]
        if options:
            winner = await self._first_answer([o.node.endpoint for o in options], request)
            for o in options:
                if o.node.endpoint == winner:
                    return o.decide(0.0, f"sparrow: first of {len(options)} probed peers to answer")
        return self.policy(view, placement, self.rng, me)

    async def _first_answer(self, endpoints: list[str], request: Infer) -> str | None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._probes[request.request_id] = future
        probe = encode(Probe(request.request_id, request.model), self.config.name, request.request_id)
        for endpoint in endpoints:
            with contextlib.suppress(zmq.Again):
                await self._link(endpoint).send(probe, flags=zmq.DONTWAIT)
        try:
            return await asyncio.wait_for(future, PROBE_TIMEOUT_S)
        except TimeoutError:
            return None
        finally:
            self._probes.pop(request.request_id, None)

    async def forward(self, client: bytes, request: Infer, decision: Decision,
                      tried: frozenset[str] = frozenset()) -> None:
        """Send `request` on to the chosen peer; its answers come back through `_relay`."""
        onward = Infer(request.request_id, request.model, request.prompt, request.max_new_tokens,
                       decision.action, request.hops + 1, request.max_hops, [*request.route, self.config.name])
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
                self._background(self.reply(forward.client, encode(lost, self.config.name, rid)))
                self.replace(forward.client, forward.request, forward.tried)

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
        self._background(self._send_to(endpoint, encode(cancel, self.config.name, cancel.request_id)))

    async def _send_to(self, endpoint: str, frame: bytes) -> None:
        with contextlib.suppress(zmq.ZMQError):  # a peer not reading: it gets nothing new from us either
            await self._link(endpoint).send(frame, flags=zmq.DONTWAIT)

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._failing.add(task)
        task.add_done_callback(self._failing.discard)

    async def _relay(self, sock: Any, endpoint: str) -> None:
        """Answers from a peer: probe replies resolve probes, the rest go to our client."""
        while True:
            frame = await sock.recv()
            env = parse_frame(frame, endpoint)
            if env is None:
                continue
            if isinstance(env.body, ProbeReply):
                future = self._probes.get(env.body.request_id)
                if future is not None and not future.done():
                    future.set_result(endpoint)
                continue
            forward = self._forwards.get(env.id)
            if forward is None:
                continue  # late answer of a request we already failed
            if env.type in ("done", "error"):
                del self._forwards[env.id]
            if isinstance(env.body, Error) and env.body.code in REFUSALS:
                # Our view was stale (the peer is full or busy): place it again elsewhere.
                log.info("%s refused %s (%s): placing it again", forward.peer, env.id, env.body.code)
                self.replace(forward.client, forward.request, forward.tried)
                continue
            await self.reply(forward.client, frame)

    async def _fail(self, client: bytes, request_id: str, code: str, message: str, node: str = "") -> None:
        """Fail a request to our client; `node` names the node that failed it (default: us)."""
        error = Error(request_id, code, message, node or self.config.name)
        await self.reply(client, encode(error, self.config.name, request_id))

    def _on_member_event(self, event: MemberEvent) -> None:
        self._view_changed.set()  # a record or a verdict: held requests may fit now
        self._report_verdict(event)
        if event.kind not in (EventKind.DEAD, EventKind.LEFT):
            return
        for rid, forward in list(self._forwards.items()):
            if forward.peer == event.node:
                del self._forwards[rid]
                why = f"{event.node} was declared {event.kind} while serving this request"
                self._background(self._fail(forward.client, rid, "peer_dead", why, forward.peer))

    def _report_verdict(self, event: MemberEvent) -> None:
        verdict = verdict_event(event, self.config.name, time.time())
        if verdict is None:
            return
        # DEAD is what fails requests and what an operator looks for; the rest is routine.
        level = logging.WARNING if verdict.kind == "dead" else logging.INFO
        log.log(level, "gossip verdict: %s is %s (%s)", verdict.node, verdict.kind, verdict.detail,
                extra={"SCHEDCTL_NODE": verdict.node})
        self.announce(verdict)


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
    return PlacementRequest(request.model, len(request.prompt.split()), request.max_new_tokens, exclude=exclude)


def has_free_slot(load: int) -> bool:
    """Answer a probe now if we have a free slot (Sparrow's late binding, simplified)."""
    return load < QUEUE_CAP


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

