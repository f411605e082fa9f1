"""The decision server: one thread, one blocking zmq.Poller over ROUTER + SUB.

Why not asyncio: zmq.asyncio costs ≈20-25 µs per awaited message and tops out near 46k
msg/s on one loop (pyzmq perf notes), more than a whole placement decision. A blocking
poller that drains every ready frame per wake-up keeps the hot path to decode, policy,
encode, send. Each wake-up runs rounds until both sockets are empty; a round reads every
waiting state frame into the inbox (which keeps only the newest per node, see
`inbox.py`), decodes a few of them, then answers a few requests. So a decision sees fresh
state, a burst of states cannot hold requests back for long, and a flood of requests
cannot starve the state socket (which would make live nodes look silent and be declared
dead).

Sockets:  ROUTER `bind`        Schedule -> Placement | Error, StatusRequest -> StatusReply
          SUB    `state_bind`  NodeState from node agents (their PUB connects here)
          PUB    `events_bind` ClusterEvent: node_joined, node_dead, node_restarted, node_recovered,
                               coordinator_active/passive, failover_vote/refused; and a
                               CoordinatorState heartbeat every `heartbeat_s`; with `model_map_s`
                               the ModelMap hybrid peers follow (referrals.py)
With a peer (role primary/backup, failover.py):
          SUB    `peer_events` the peer's CoordinatorState heartbeats
          DEALER per node      WitnessQuery/WitnessVote around a takeover, then EpochNotice

MIGRATE (live migration, daemons/node/migration.py): a policy's MIGRATE places the request
on its node and sends that node one `Migrate` per running request of the busy models it
must evict (mover.py; startup.py `room_moves` picks where each goes); the node's load
waits until they have left. With `live_migration = false` (or when nothing can be moved)
the policy is asked again without the MIGRATE target instead. `rebalance = true` adds the
periodic rebalancer (daemons/policy/rebalance.py), also through mover.py.

Admission (admission.py): a request no node can take now (the policy refuses with
`no_nodes`, or answers only MIGRATE that cannot be carried out) is held in a bounded
queue per model and answered once the policy places it: the queue's heads are offered
to the policy again after every batch of node states (a model went idle, a load
finished, a node joined) and on every failure-detector tick. It leaves with `overloaded`
when its model's queue is full and `queue_timeout` at its deadline, never silently.

Malformed or unexpected frames are dropped with one log line each and never stop the loop.

In-process use (tests, simulators):

    coord = Coordinator(CoordinatorConfig(bind="tcp://127.0.0.1:7555", ...))
    coord.bind()
    thread = threading.Thread(target=coord.serve_forever); thread.start()
    ...; coord.stop(); thread.join(); coord.close()

As a process: `schedctl start coordinator` (which calls `run`).
"""

from __future__ import annotations

import errno
import gc
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from random import Random
from types import FrameType
from typing import Any

import zmq

from daemons.bus import activation, encode, make_socket, parse_frame, split_router_frames
from daemons.bus.metrics import MetricsConfig, serve
from daemons.bus.security import Security, SecurityConfig, refused, stop_zap
from daemons.bus.sockets import authenticated, guard, recv_routed, send_routed
from daemons.coordinator.cluster import ClusterBook, Event
from daemons.coordinator.config import CoordinatorConfig
from daemons.coordinator.decide import decide
from daemons.coordinator.epoch import EpochStore
from daemons.coordinator.failover import BinaryStar, Failover, State, next_epoch
from daemons.coordinator.inbox import StateInbox, envelope_header, state_sender
from daemons.coordinator.metrics import CoordinatorMetrics, Snapshot
from daemons.coordinator.moveplan import order_of
from daemons.coordinator.mover import Mover
from daemons.coordinator.prewarmer import Prewarmer, PrewarmLinks
from daemons.coordinator.referrals import MapPublisher
from daemons.coordinator.witnesses import Witnesses
from daemons.core import sdnotify
from daemons.core.errors import ConfigError
from daemons.core.messages import (
    ClusterEvent,
    CoordinatorState,
    EpochNotice,
    Error,
    Migrate,
    NodeState,
    Placement,
    Progress,
    Schedule,
    StatusReply,
    StatusRequest,
)
from daemons.core.slotted import positional
from daemons.policy import NO_NODES, ClusterView, Decision, PlacementRequest, Refusal, get_policy
from daemons.policy.admission import AdmissionQueue, Outcome, Waiting
from daemons.policy.capacity import worth_waiting

log = logging.getLogger("schedctl.coordinator")

POLL_MS = 100  # upper bound on how late a stop request or a death is noticed
# States handled per wake-up before requests get their turn: decoding one NodeState once cost
# ~0.2 ms when its 20-model catalog was new to us, and 32 in a row showed up as a 5-10 ms p99
# on decisions; 4 keeps a request's wait behind state work well under 1 ms. (Now ~35 µs with a
# new catalog, ~15 µs with an unchanged one, recognised by schema.Memo, + ~10 µs to apply it.)
STATE_BATCH = 4
STATE_COLLECT = 1024  # state frames read into the inbox (cheap) per round
REQUEST_BATCH = 32  # requests per round, between two looks at the state socket
MAX_ROUNDS = 1000  # rounds per wake-up before the stop flag and the failure detector run
# The collector's young generation is raised from 700 allocations: a decision allocates a
# few dozen objects, and frequent collections over a heap holding 100 nodes' state show up
# as p99 latency spikes (pyzmq perf notes: GC can stall the loop for tens of ms).
GC_THRESHOLD = (20_000, 20, 50)
SUMMARY_EVERY_S = 10.0
HELD_BEAT_S = 1.0  # a Progress to each asker whose request waits in the queue (_held_beat)
# Refusals that may clear up as capacity frees: the request waits in the admission queue.
# (unknown_model never clears up: it is answered at once.)
QUEUEABLE = frozenset({NO_NODES})
FLAGS = {"bind": "--bind", "state_bind": "--state-bind", "events_bind": "--events-bind"}
ROLES = {"bind": "request ROUTER", "state_bind": "state SUB", "events_bind": "events PUB"}


class Coordinator:
    """The centralized scheduler. Not thread-safe: one thread calls serve_forever."""

    def __init__(self, config: CoordinatorConfig, security: Security | None = None,
                 metrics: CoordinatorMetrics | None = None) -> None:
        """`metrics`: count for Prometheus in it (run() serves its registry)."""
        self.config = config
        self.policy = get_policy(config.policy, "centralized", config.affinity)
        self.rng = Random(config.seed)
        self.book = ClusterBook(config.dead_after_s, config.settle_s, config.max_nodes, config.reap_after_s)
        self.inbox = StateInbox()
        self.counts = {"decisions": 0, "refusals": 0, "dropped": 0, "status": 0}
        self.states_received = 0  # state frames read from the SUB (before coalescing)
        self._outbox: list[tuple[bytes, bytes, str, str]] = []  # answers not sent yet (_flush)
        self.metrics = metrics
        if metrics is not None:
            metrics.snapshot = self._metrics_snapshot
        self.queue: AdmissionQueue[Asked] = AdmissionQueue(config.queue, config.priority, config.priority_aging_s)
        self._states_seen = False  # node states arrived since the queue was last offered to the policy
        self._stop = threading.Event()
        self.ctx: zmq.Context[Any] = zmq.Context()
        # With [security], every socket is a CURVE server admitting only the listed keys
        # (the ZAP handler must run first: CURVE without ZAP admits anyone).
        self.security = security or Security(SecurityConfig())
        self.security.start_zap(self.ctx)
        server = self.security.bind_server()
        self.router = make_socket(self.ctx, zmq.ROUTER, curve=server)
        self.sub = make_socket(self.ctx, zmq.SUB, curve=server)
        self.pub = make_socket(self.ctx, zmq.PUB, curve=server)
        self.watchdog = sdnotify.Watchdog()
        # With CURVE every message is checked against its sender's authenticated identity
        # (daemons/bus/authz.py), read from the frame: so frames are received uncopied.
        self._secure = self.security.enabled
        self.endpoints: dict[str, str] = {}  # bind / state_bind / events_bind -> the endpoint bound
        self._check_every = min(0.1, config.dead_after_s / 10)
        self.poller = zmq.Poller()  # only to sleep until something arrives; the loop reads the sockets
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.router, zmq.POLLIN)
        self.mover = Mover(self.ctx, config.name, config.rebalance_threshold, self.security.client)
        self.maps = MapPublisher(config.name, config.model_map_s)  # hybrid peers' map (referrals.py)
        self.prewarmer = Prewarmer(config.prewarming, time.monotonic())
        self.prewarm_links = PrewarmLinks(self.ctx, config.name, self.security.client)
        # Read on every decision: bound and looked up once.
        self._prewarming = self.prewarmer.settings.enabled
        self._view, self._room, self._admission = self.book.view, self._make_room, config.admission
        self._init_failover()

    def _init_failover(self) -> None:
        config = self.config
        self.epochs = EpochStore(Path(config.epoch_file)) if config.epoch_file else None
        stored = self.epochs.read() if self.epochs else 0
        self.star: BinaryStar | None = None
        self.epoch = 0  # the epoch our placements carry (0: standalone without an epoch file)
        if config.role == "standalone":
            self.epoch = next_epoch("primary", stored) if self.epochs else 0
        else:
            self.star = BinaryStar(config.role, config.failover_after_s, stored, time.monotonic())
            self.failover = Failover(self.star, config.name, config.peer, config.witness_timeout_s,
                                     config.heartbeat_s)
            self.peer_sub = make_socket(self.ctx, zmq.SUB, curve=self.security.client)
            self.poller.register(self.peer_sub, zmq.POLLIN)
            self.witnesses = Witnesses(self.ctx, self.poller, config.name, self.security.client)
        self._next_beat = 0.0

    # ----- lifecycle ------------------------------------------------------------------------
    def bind(self) -> None:
        """Bind the three sockets (or adopt the launcher's, activation.py); a ConfigError naming
        the flag to change if one is taken. `self.endpoints` holds what was really bound."""
        for key, sock in (("bind", self.router), ("state_bind", self.sub), ("events_bind", self.pub)):
            address = getattr(self.config, key)
            try:
                self.endpoints[key] = activation.bind(sock, address)
            except zmq.ZMQError as exc:
                self.close()
                raise ConfigError(_bind_error(key, address, exc)) from None
        if self.star is not None:
            self.peer_sub.connect(self.config.peer_events)
        elif self.epochs is not None:
            self.epochs.write(self.epoch)  # a restart never reuses an epoch
        bound = self.endpoints
        log.info("coordinator ready: schedule on %s, state on %s, events on %s, policy %s, seed %d, "
                 "dead after %.1f s", bound["bind"], bound["state_bind"], bound["events_bind"], self.config.policy,
                 self.config.seed, self.config.dead_after_s)

    def stop(self) -> None:
        """Ask serve_forever to return (thread- and signal-safe); it does within POLL_MS."""
        self._stop.set()

    def close(self) -> None:
        if self.ctx.closed:
            return
        for sock in (self.router, self.sub, self.pub):
            sock.close(0)
        if self.star is not None:
            self.peer_sub.close(0)
            self.witnesses.close()
        self.mover.close()
        self.prewarm_links.close()
        stop_zap(self.ctx)
        self.ctx.term()

    def __enter__(self) -> Coordinator:
        self.bind()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- the loop ---------------------------------------------------------------------------
    def serve_forever(self) -> None:
        next_check = time.monotonic()
        next_summary = next_check + SUMMARY_EVERY_S
        next_held_beat = next_check + HELD_BEAT_S
        while not self._stop.is_set():
            self.poller.poll(POLL_MS)
            self.watchdog.ping()  # from this loop: if it hangs, systemd restarts us
            # The peer first: after a pause, its newer epoch must depose us before we answer.
            self._failover_tick(time.monotonic())
            self._rounds()
            now = time.monotonic()
            # Beats may sit unread in our own queue: wait for it to drain, unless we are
            # so far behind that waiting longer would hide real deaths.
            if now >= next_check and (not self._state_backlog() or now - next_check > self.config.dead_after_s):
                self._emit(self.book.expire(now))
                next_check = now + self._check_every
                self._pump(now)
            elif self._states_seen:
                self._pump(now)
            if self.config.rebalance and (self.star is None or self.star.active):
                self.mover.tick(self.book.view(), now)
            if self.maps.due(now) and (self.star is None or self.star.active):
                self._publish(self.maps.frame(self.book.view(), self.epoch, now))
            if self.prewarmer.settings.enabled and (self.star is None or self.star.active):
                for order in self.prewarmer.tick(self.book.view, now):
                    self.prewarm_links.send(order)
            if now >= next_held_beat:
                self._held_beat()
                next_held_beat = now + HELD_BEAT_S
            if now >= next_summary:
                self._summary()
                next_summary = now + SUMMARY_EVERY_S
            self._flush()
        log.info("coordinator stopping: %s", self._counts_text())

    def _rounds(self) -> None:
        for _ in range(MAX_ROUNDS):
            collected = self._drain(self._recv_state, self._collect_state, STATE_COLLECT)
            for _ in range(STATE_BATCH):
                frame = self.inbox.pop()
                if frame is None:
                    break
                self._on_state(frame)
            requests = self._drain(self._recv_request, self._on_request_frames, REQUEST_BATCH)
            self._flush()
            if not self.inbox and collected < STATE_COLLECT and requests < REQUEST_BATCH:
                return

    def _drain(self, recv: Any, handle: Any, limit: int) -> int:
        """Handle up to `limit` waiting messages; how many there were."""
        for done in range(limit):
            try:
                frames = recv()
            except zmq.Again:
                return done
            handle(frames)
        return limit

    def _recv_state(self) -> list[Any]:
        return self.sub.recv_multipart(zmq.NOBLOCK, copy=not self._secure)  # type: ignore[no-any-return]

    def _recv_request(self) -> list[Any]:
        return recv_routed(self.router, copy=not self._secure)

    def _state_backlog(self) -> bool:
        """Unread state frames: a node is not dead while its beat may sit in our own queue."""
        return bool(self.inbox) or bool(self.sub.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    # ----- node state -----------------------------------------------------------------------
    def _collect_state(self, frames: list[Any]) -> None:
        frames, identity = authenticated(frames)
        if len(frames) != 1:
            self._drop(f"state message with {len(frames)} frames (expected 1)")
            return
        header = envelope_header(frames[0])
        if header is not None and header[0] == "event":
            return  # a node's own event (a pre-warm, an eviction) is for observers on its PUB, not for us
        # The inbox coalesces by the header's sender: only a node's own key may speak for it.
        if self._secure and not guard(identity, "state", state_sender(frames[0]) or ""):
            self.counts["dropped"] += 1
            return
        self.states_received += 1
        self.inbox.put(frames[0])

    def _on_state(self, frame: bytes) -> None:
        env = parse_frame(frame, "state publisher")
        if env is None:
            self.counts["dropped"] += 1
            return
        if isinstance(env.body, ClusterEvent):
            return  # a node's own events (verdicts, migrations, hybrid_*) share its PUB: for the collector
        if not isinstance(env.body, NodeState):
            self._drop(f"{env.type!r} from {env.sender!r} on the state socket (expected state)")
            return
        if self._secure and env.body.node != env.sender:  # the sender was checked on arrival
            self.counts["dropped"] += 1
            refused("message", f"dropped: {env.sender[:64]!r} sent state about {env.body.node[:64]!r}")
            return
        self._emit(self.book.ingest(env.body, time.monotonic()))
        self._states_seen = True

    def _emit(self, events: list[Event]) -> None:
        for kind, node, detail in events:
            level = logging.WARNING if kind in ("node_dead", "node_restarted") else logging.INFO
            log.log(level, "%s %s: %s", kind, node, detail, extra={"SCHEDCTL_NODE": node})
            frame = encode(ClusterEvent(kind, node, detail, time.time()), self.config.name)
            try:
                self.pub.send(frame, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # a PUB only fails when shutting down; never stop on it
                log.warning("could not publish %s: %s", kind, exc)

    # ----- failover (failover.py) --------------------------------------------------------------
    def _failover_tick(self, now: float) -> None:
        if now >= self._next_beat:
            self._beat()
            self._next_beat = now + self.config.heartbeat_s
        if self.star is None:
            return
        self._drain_peer(now)
        self.witnesses.drain(self.failover)
        self._maybe_vote(now)
        decided = self.failover.decided(now)
        if decided is not None:
            changed, event = decided
            if changed is None:
                self._emit([event])  # failover_refused
            else:
                self._on_transition(changed, event)

    def _drain_peer(self, now: float) -> None:
        while True:
            try:
                frame = self.peer_sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            env = parse_frame(frame, "peer coordinator")
            if env is None:
                self.counts["dropped"] += 1
            elif isinstance(env.body, CoordinatorState):
                heard = self.failover.heard(env.body.state, env.body.epoch, now)
                if heard is not None:
                    self._on_transition(*heard)
            # the peer's ClusterEvents share its PUB: they are for observers, not for us

    def _on_transition(self, state: State, event: Event) -> None:
        assert self.star is not None
        if state is State.ACTIVE:
            if self.epochs is not None:
                self.epochs.write(self.star.serving_epoch)  # durable before any answer in it
            self.epoch = self.star.serving_epoch
            self.witnesses.notify(self.book.alive_endpoints(), EpochNotice(self.config.name, self.epoch))
        self._emit([event])
        self._beat()

    def _maybe_vote(self, now: float) -> None:
        """Ask the witnesses, once the peer is silent (failover.py `Failover.vote_due`)."""
        nodes = self.book.alive_endpoints()
        due = self.failover.vote_due(nodes, now)
        if due is not None:
            query, event = due
            self.witnesses.ask(nodes, query)
            self._emit([event])

    def _refuse_inactive(self, msg: Schedule) -> Error:
        self.counts["refusals"] += 1
        if self.metrics is not None:
            self.metrics.refused("not_active")
        return Error(msg.request_id, "not_active", self.failover.refusal())

    def _publish(self, frame: bytes) -> None:
        try:
            self.pub.send(frame, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # a PUB only fails when shutting down
            log.warning("could not publish: %s", exc)

    def _beat(self) -> None:
        """Our CoordinatorState on the events PUB: for the peer, the collector, operators."""
        state = self.star.state.value if self.star else "active"
        epoch = self.star.epoch if self.star else self.epoch
        beat = CoordinatorState(self.config.name, self.config.role, state, epoch, self.config.bind, time.time())
        try:
            self.pub.send(encode(beat, self.config.name), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("could not publish a heartbeat: %s", exc)

    def _ha_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.config.name, "role": self.config.role, "epoch": self.epoch,
                                "state": self.star.state.value if self.star else "active"}
        if self.star is not None:
            heard = self.star.peer_heard_at
            info["peer"] = self.config.peer
            info["peer_state"] = self.star.peer_state
            info["peer_heard_s_ago"] = None if heard is None else round(time.monotonic() - heard, 3)
        return info

    # ----- requests ---------------------------------------------------------------------------
    def _on_request_frames(self, frames: list[Any]) -> None:
        peer = None
        if self._secure:  # received uncopied, with the sender's authenticated identity
            frames, peer = authenticated(frames)
        if len(frames) != 2 and split_router_frames(frames) is None:  # it logs what is wrong
            self.counts["dropped"] += 1
            return
        identity, payload = frames
        env = parse_frame(payload, identity)
        if env is None:
            self.counts["dropped"] += 1
            return
        body = env.body
        if self._secure and not guard(peer, env.type, env.sender, body):
            self.counts["dropped"] += 1
            return
        if isinstance(body, Schedule):
            answer = self._schedule(body, identity, env.id)
            if answer is not None:
                self._reply(identity, answer, env.id)
        elif isinstance(body, StatusRequest):
            self.counts["status"] += 1
            rows, omitted = self.book.status_page(time.monotonic())
            info = {**self._ha_info(), **self.queue.status()}
            if omitted:  # the reply stays under the frame limit at any cluster size
                info = {**info, "omitted_nodes": omitted, "refused_nodes": self.book.refused_nodes}
            self._reply(identity, StatusReply("coordinator", rows, info), env.id)
        elif isinstance(body, Migrate):
            why = self.mover.forward(body, self.book.view(), time.monotonic())
            if why:
                self._reply(identity, Error(body.request_id, "bad_migration", why), env.id)
        else:
            self._drop(f"{env.type!r} from {env.sender!r} on the request socket "
                       "(expected schedule or status_request)")

    def _schedule(self, msg: Schedule, identity: bytes, msg_id: str) -> Placement | Error | None:
        """The answer to a Schedule, or None while it waits in the admission queue."""
        if self.star is not None and not self.star.active:
            return self._refuse_inactive(msg)
        queue = self.queue
        busy = bool(queue)  # the common case, on every decision: nobody waits
        queued = busy and msg.request_id in queue
        if not queued and self._prewarming:  # a new arrival (not one asking again while it waits)
            self.prewarmer.arrived(msg.model, time.monotonic())
        if queued or (busy and queue.waits_ahead(msg.model, msg.priority)):
            # Asked again while waiting (a reroute, a retry), or its model has earlier
            # requests of its class or a higher one waiting: it queues behind them.
            refused = self._hold(Asked(msg, identity, msg_id), time.monotonic())
            if refused is None:
                self._pump_lane(msg.model, msg.priority)
            return refused
        started = time.perf_counter()
        result = self._decide(msg)
        if isinstance(result, Decision):
            return self._placed(msg, result, time.perf_counter() - started)
        if result.code in QUEUEABLE and worth_waiting(self.book.view(), _request(msg)):
            return self._hold(Asked(msg, identity, msg_id), time.monotonic())
        return self._refused(msg, result)

    def _decide(self, msg: Schedule) -> Decision | Refusal:
        """The policy's choice (decide.py: the simulator's too), shed if `admission` is slo and it
        misses the request's SLO; a MIGRATE is carried out (its room made by live migrations) or,
        when it cannot be, replaced by the best option that serves now."""
        return decide(self.policy, self._view, _request(msg), self.rng, self._room, self._admission)

    def _make_room(self, view: ClusterView, decision: Decision) -> bool:
        """Order the live migrations a MIGRATE needs; False if off, or if there is nothing to move."""
        moves = self.mover.plan.room(view, decision, self.config.live_migration)
        if moves:
            log.info("MIGRATE on %s: moving %d running request(s) of %s off it", decision.node, len(moves),
                     ", ".join(sorted({m.model for m in moves})), extra={"SCHEDCTL_ACTION": "MIGRATE"})
        now = time.monotonic()
        for move in moves:
            self.mover.order(order_of(move), move.source_endpoint, now)
        return bool(moves)

    def _placed(self, msg: Schedule, result: Decision, took: float) -> Placement:
        self.book.placed(result, msg.model, time.monotonic())
        self.maps.placed(result.action)
        self.counts["decisions"] += 1
        if self.metrics is not None:
            self.metrics.placed(result.action, took)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %s %s: %s", msg.request_id, result.node, result.action, result.reason,
                      extra={"SCHEDCTL_REQUEST_ID": msg.request_id, "SCHEDCTL_NODE": result.node,
                             "SCHEDCTL_ACTION": result.action})
        return _placement(msg.request_id, result.node, result.endpoint, result.action,
                          result.est_wait_s, result.reason, took, self.epoch)

    def _refused(self, msg: Schedule, result: Refusal | Outcome[Asked]) -> Error:
        self.counts["refusals"] += 1
        if self.metrics is not None:
            self.metrics.refused(result.code)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s refused: %s", msg.request_id, result.message,
                      extra={"SCHEDCTL_REQUEST_ID": msg.request_id})
        return Error(msg.request_id, result.code, result.message)

    # ----- the admission queue (admission.py) ------------------------------------------------
    def _hold(self, asked: Asked, now: float) -> Error | None:
        """Queue a request no node can take now; an `overloaded` Error if its model's queue is full."""
        msg = asked.msg
        refused = self.queue.offer(msg.request_id, msg.model, asked, now, msg.timeout_s, msg.priority)
        if refused is not None:
            log.warning("%s refused: %s", msg.request_id, refused.message,
                        extra={"SCHEDCTL_REQUEST_ID": msg.request_id})
            return self._refused(msg, refused)
        return None

    def _pump(self, now: float) -> None:
        """Answer what left the queue at its deadline, then offer every lane's head to the policy."""
        self._states_seen = False
        if not self.queue:
            return
        for out in self.queue.expire(now):
            log.warning("%s: %s", out.entry.request_id, out.message,
                        extra={"SCHEDCTL_REQUEST_ID": out.entry.request_id})
            self._answer(out.entry, self._refused(out.entry.item.msg, out))
        if self.star is not None and not self.star.active:
            # Deposed while holding requests: their askers must ask the active coordinator.
            for entry in self.queue.release_all():
                self._answer(entry, self._refuse_inactive(entry.item.msg))
            return
        for head in self.queue.heads():
            self._pump_lane(head.model, head.priority)

    def _held_beat(self) -> None:
        """Tell every asker whose request waits here that it does (a Progress with no tokens):
        its load generator then keeps waiting for this coordinator instead of suspecting it,
        since a silent coordinator and one holding a request look alike otherwise."""
        for entry in self.queue.waiting():
            self._answer(entry, Progress(entry.request_id, self.config.name, 0))

    def _pump_lane(self, model: str, priority: int) -> None:
        """Place the requests waiting for `model`, in arrival order, until the policy cannot."""
        while (head := self.queue.head(model, priority)) is not None:
            started = time.perf_counter()
            result = self._decide(head.item.msg)
            if isinstance(result, Refusal) and result.code in QUEUEABLE:
                return
            self.queue.remove(head.request_id, placed=isinstance(result, Decision))
            msg = head.item.msg
            if isinstance(result, Decision):
                waited = time.monotonic() - head.arrived
                log.info("%s placed after %.2f s in the queue: %s %s", msg.request_id, waited, result.node,
                         result.action, extra={"SCHEDCTL_REQUEST_ID": msg.request_id})
                self._answer(head, self._placed(msg, result, time.perf_counter() - started))
            else:
                self._answer(head, self._refused(msg, result))

    def _answer(self, entry: Waiting[Asked], body: Placement | Error | Progress) -> None:
        self._reply(entry.item.identity, body, entry.item.msg_id)

    def _reply(self, identity: bytes, body: Any, msg_id: str) -> None:
        """Answer on the ROUTER at the next `_flush` (within the same round of the loop)."""
        self._outbox.append((identity, encode(body, self.config.name, msg_id), msg_id, body.TYPE))

    def _flush(self) -> None:
        """Send every answer of the round, back to back. Sent one per decision, each reply woke
        the ZeroMQ I/O thread (a syscall, and on a busy machine a context switch) for one TCP
        write: ~10 µs a reply, as much as the decision. A round's replies leave together, at
        most REQUEST_BATCH decisions (< 1 ms) after the first; one request alone leaves at once."""
        for identity, frame, msg_id, kind in self._outbox:
            try:
                send_routed(self.router, identity, frame)
            except zmq.ZMQError as exc:  # the asker vanished (ROUTER_MANDATORY) or its pipe is full
                log.warning("could not answer %s with %s: %s", msg_id, kind, exc.strerror,
                            extra={"SCHEDCTL_REQUEST_ID": msg_id})
        self._outbox.clear()

    def _drop(self, what: str) -> None:
        self.counts["dropped"] += 1
        log.warning("dropped %s", what)

    def _counts_text(self) -> str:
        alive = self.book.alive_count()
        counts = {**self.counts, "states superseded": self.inbox.superseded, "queued": len(self.queue),
                  "placed from queue": self.queue.placed, "queue timeouts": self.queue.expired,
                  "overloaded": self.queue.refused}
        return (f"{alive}/{len(self.book.records)} nodes alive, " +
                ", ".join(f"{k} {v}" for k, v in counts.items()))

    def _summary(self) -> None:
        log.info("%s", self._counts_text())

    def _metrics_snapshot(self) -> Snapshot:
        """For a Prometheus scrape, on the endpoint's thread: reads plain values only (a list
        copy of the records is one step under the GIL, so the loop may change the book meanwhile)."""
        records = list(self.book.records.values())
        alive = sum(1 for r in records if r.alive)
        return Snapshot(self.states_received, self.counts["dropped"], alive, len(records) - alive, len(self.queue),
                        self.epoch, self.config.role, self.star.state.value if self.star else "active")


def _request(msg: Schedule, exclude: frozenset[str] | None = None) -> PlacementRequest:
    if exclude is None:
        exclude = frozenset(msg.exclude) if msg.exclude else NOTHING_EXCLUDED
    return _placement_request(msg.model, msg.prompt_tokens, msg.max_new_tokens, msg.priority, exclude,
                              msg.slo_ttft_s)


# Built on every decision: with every field, slot by slot (slotted.py), at half the cost.
_placement = positional(Placement)
_placement_request = positional(PlacementRequest)
NOTHING_EXCLUDED: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Asked:
    """A held Schedule and where to answer it (the asker's ROUTER identity and message id)."""

    msg: Schedule
    identity: bytes
    msg_id: str


def _bind_error(key: str, address: str, exc: zmq.ZMQError) -> str:
    flag = FLAGS[key]
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot bind the {ROLES[key]} socket to {address}: address already in use (another "
                f"coordinator?): stop that process or pass {flag} with a free address")
    return f"cannot bind the {ROLES[key]} socket to {address}: {exc.strerror}: pass {flag} with a valid address"


def run(config: CoordinatorConfig, security: Security | None = None, metrics: MetricsConfig | None = None) -> None:
    """Run a coordinator in the foreground until SIGTERM or SIGINT, then close cleanly;
    with `metrics` enabled, its Prometheus endpoint runs alongside."""
    metrics = metrics or MetricsConfig()
    counted = CoordinatorMetrics(config.policy) if metrics.enabled else None
    # Opened first: a taken port then stops the coordinator before it holds any socket or thread.
    endpoint = serve(counted.registry, metrics.bind) if counted is not None else None
    if endpoint is not None:
        log.info("metrics on http://%s/metrics", endpoint.address)
    try:
        coord = Coordinator(config, security, counted)
        coord.bind()
    except BaseException:
        if endpoint is not None:
            endpoint.close()
        raise
    sdnotify.ready(f"scheduling on {coord.endpoints['bind']} with {config.policy}", coord.endpoints)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        sdnotify.stopping()
        coord.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    # Process-wide, so here and not in serve_forever (which may run inside someone's process).
    gc.freeze()  # what exists now lives as long as the daemon: never scan it again
    gc.set_threshold(*GC_THRESHOLD)
    try:
        coord.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        coord.close()
        if endpoint is not None:
            endpoint.close()
