"""The node agent daemon: serves `infer` and `status_request` on its ROUTER, publishes state.

    loadgen/peer --Infer--> ROUTER --> ModelManager.acquire (COLD_START if not loaded)
                                   --> Backend.stream (TGI protocol, huggingface_hub)
                <--FirstToken, Progress every second, Done | Error--
    loadgen/peer --Cancel--> ROUTER --> the request's task is cancelled: stream closed, slot freed
    PUB --NodeState--> coordinator / collectors, every `publish_interval_s` and on change
    PUB --ClusterEvent--> collectors (gossip mode only, so no coordinator): this peer's
        verdicts suspect / dead / alive about other members, as it reaches them

Gossip mode (`scheduler = "gossip"`) is all in daemons/node/gossip_mode.py: a request
that arrives without an action is handed to it to place (here, or forwarded to a peer),
and it comes back only through `HostNode` (local_state, serve_locally, send, announce).
Hybrid mode (`scheduler = "hybrid"`, daemons/node/hybrid_mode.py) is gossip mode that refers
cold starts to a coordinator; the node serves both alike (`peer_mode` picks the one).

Coordinator failover: a placement carries its coordinator's epoch (`Infer.epoch`); the node
keeps the newest epoch it has seen (from placements and `EpochNotice`) and refuses older
ones with `stale_epoch` (fencing.py), so a deposed coordinator's decisions never run. A `WitnessQuery`
makes the node probe the named coordinator and vote whether it is gone.

Liveness of a request: from acceptance to its answer, everyone waiting on a request hears
a `Progress` (tokens so far) every PROGRESS_EVERY_S, so the load generator's attempt timer
measures silence, not age, and a request decoding for minutes is never sent again while it
runs. Periodic rather than one message per token: per-token frames would cost an encode, a
send, a gossip relay and a decode per generated token (10 req/s x 2,000 tokens = 20,000
frames/s into the load generator's one thread, which also keeps the send clock), while one
frame per request per second carries the same liveness whatever the output length; the
attempt timeout (seconds) needs no finer grain. A duplicate `Infer` for a request running
here is attached to it (the new asker hears its progress and answer too), never run twice;
a `Cancel` naming this node stops it (another node won a race) and frees the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, cast

import zmq
import zmq.asyncio

from daemons.bus import activation, encode, make_socket, parse_frame, split_router_frames
from daemons.bus.metrics import MetricsConfig, serve
from daemons.bus.security import Security, SecurityConfig, stop_zap
from daemons.bus.sockets import authenticated, guard
from daemons.core import sdnotify
from daemons.core.errors import ConfigError
from daemons.core.messages import (
    Cancel,
    ClusterEvent,
    Done,
    EpochNotice,
    Error,
    FirstToken,
    GpuState,
    Handover,
    Infer,
    Migrate,
    ModelState,
    NodeState,
    Prewarm,
    Probe,
    Progress,
    Resume,
    ResumeReady,
    StatusReply,
    StatusRequest,
    StreamToken,
    WitnessQuery,
    WitnessVote,
)
from daemons.core.schema import to_dict
from daemons.gossip.metrics import GossipMetrics
from daemons.node.actions import served_action
from daemons.node.backend_api import BackendRequestError, Finished
from daemons.node.catalog import Catalog
from daemons.node.config import MIN_PUBLISH_GAP_S, PROGRESS_EVERY_S, NodeConfig
from daemons.node.fencing import EpochFence, probe_window, witness_vote
from daemons.node.gpu import GpuProbe, GpuReading, choose_probe
from daemons.node.hybrid_mode import peer_mode
from daemons.node.instances import Instance, make_manager
from daemons.node.learning import LoadWatcher, NodeLearning
from daemons.node.metrics import NodeMetrics
from daemons.node.migration import MAX_RESUME_ROUNDS, SILENCE_S, Relay, Rounds, Step, Verdict, detail, pick, refusal
from daemons.node.slots import SlotQueue
from daemons.policy.prewarm import TICK_S as PREWARM_TICK_S
from daemons.policy.prewarm import order_message
from daemons.policy.view import ClusterView

log = logging.getLogger("schedctl.node")
COMPLETED_CACHE = 10_000  # finished request ids remembered for deduplicating retries
MAX_WITNESS_PROBES = 4  # concurrent witness probes; a flood of queries gets "busy" votes
MAX_LISTENERS = 4  # askers attached to one running request (the first and its retries)
SWITCHED = -1  # what _stream returns as its token count when a migration stopped it


class MigrationFailed(Exception):
    """The destination of a migration failed or fell silent: the source keeps the request."""


class MigrationCancelled(MigrationFailed):
    """The destination was told to stop the request (its client's Cancel reached it first)."""


@dataclass(eq=False)
class Served:
    """A request served here: what it generated, and its migration if one is under way.

    `offset` tokens (text `history`) were generated elsewhere before a migration brought it
    here; `texts` are the ones generated here (or relayed from a destination), so the
    request's context is always prompt + history + texts, and its next token index
    `tokens`. `node` is who generates it now: this node, or its migration's destination."""

    request: Infer
    node: str
    offset: int = 0
    history: str = ""
    texts: list[str] = field(default_factory=list)
    last_token_t: float = 0.0
    switch: asyncio.Event = field(default_factory=asyncio.Event)  # stop at the next token: hand over
    order: Migrate | None = None  # the migration under way
    link: Any = None  # DEALER to the migration's destination
    migration: asyncio.Task[None] | None = None  # its rounds
    started_t: float = 0.0  # when the Migrate arrived
    rounds: int = 0
    action: str = ""  # what this node did for it (Done.action), kept across a handover
    run_t: float = 0.0  # when this node started serving it
    timings: dict[str, float] = field(default_factory=dict)  # Done.timings of its first run here

    @property
    def tokens(self) -> int:
        return self.offset + len(self.texts)

    @property
    def generated(self) -> str:
        return self.history + "".join(self.texts)


class NodeServer:
    """One node agent: its ROUTER serves requests, its PUB publishes its state.

    Binds one ROUTER (`bind`, or the socket a launcher handed down) where load generators,
    coordinators, peers and operators send `Infer`, `Cancel`, `EpochNotice`,
    `WitnessQuery`, `StatusRequest` and (gossip mode) Sparrow's `Probe`; every answer goes
    back on it to the asker's identity. Its PUB connects to each `publish_to` address and
    publishes a `NodeState` (GPUs, models, load, catalog; `seq` within the boot `gen`)
    every `publish_interval_s` and at once on a change, at most one per MIN_PUBLISH_GAP_S;
    in gossip mode also the peer's verdicts (`ClusterEvent`), and the state is gossiped.

    A request's life: `_accept` applies its ordered rules (duplicates, completed cache,
    epoch, gossip placing) and runs it as a task in `active` (so it counts as in flight,
    a duplicate attaches to it and a Cancel finds it). Served here, `_serve_request`
    acquires the model's instance (ModelManager: loads it if needed, a COLD_START),
    streams it from the backend, sends FirstToken at the first token, Progress every
    PROGRESS_EVERY_S to every listener, and ends with Done (remembered for retries) or
    Error (timeout, backend failure, cancelled); then the task leaves `active`, which
    publishes the state change. A request placed by gossip mode is either served here the
    same way (`serve_locally`) or forwarded; gossip mode relays a peer's answers.

    It is the `HostNode` of its gossip mode: `local_state`, `serve_locally`, `send`, `announce`.
    """

    def __init__(self, config: NodeConfig, security: Security | None = None,
                 metrics: NodeMetrics | None = None) -> None:
        """`metrics`: count for Prometheus in it (run() serves its registry)."""
        self.config = config
        self.catalog = Catalog(config.models, config.gpu, config.checkpoint_tier, config.kv_tokens,
                               config.init_s)
        self.probe: GpuProbe = choose_probe(config.gpu_backend, config.gpu, self.catalog.gpu_memory)
        self.gen = random.getrandbits(62)  # boot nonce: a restart is a new generation
        self.seq = 0
        self.active: dict[str, asyncio.Task[None]] = {}
        self.completed: OrderedDict[str, Done] = OrderedDict()  # only successes: failures may be retried
        self._listeners: dict[str, list[bytes]] = {}  # request served here -> who hears its replies
        self._served: dict[str, Served] = {}  # request served here -> its tokens and migration
        self._rounds: set[str] = set()  # requests this node prefills as a migration's destination
        self._cancelled: set[str] = set()  # requests a Cancel stopped (their task ends as "cancelled")
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self.manager = make_manager(config, self.catalog, self._memory_total, self._changed.set)
        # Learned affinity and pre-warming (learning.py): estimates, forecasts, their events.
        self.learning = NodeLearning(config.prewarming, time.monotonic())
        self.manager.watcher = LoadWatcher(self.learning, self._event, time.monotonic)
        self.manager.victim_key = lambda model, used: self.learning.victim_key(model, used, time.monotonic())
        self.slots = SlotQueue(config.max_running, config.priority_aging_s, config.priority)
        self.ctx = zmq.asyncio.Context()
        self.security = security or Security(SecurityConfig())
        self.security.start_zap(self.ctx)  # CURVE server sockets need the ZAP handler first
        self.router = make_socket(self.ctx, zmq.ROUTER, curve=self.security.bind_server())
        self.pub = make_socket(self.ctx, zmq.PUB, curve=self.security.client)
        self._status = ""
        self.endpoints: dict[str, str] = {}  # bind (and gossip_bind) -> the endpoint bound
        self._background: set[asyncio.Task[None]] = set()
        self.fence = EpochFence()  # the newest coordinator epoch seen; placements of older ones are refused
        self._witness_probes = 0
        self.gossip = peer_mode(config, self.ctx, self, self.security)
        self.last_state: NodeState | None = None  # the last NodeState published (metrics read it)
        self.metrics = metrics
        if metrics is not None:
            metrics.state = lambda: self.last_state
            self.manager.observer = metrics

    # ----- lifecycle -------------------------------------------------------------
    async def serve(self) -> None:
        self._bind()
        if self.gossip is not None:
            await self.gossip.start()
            self.endpoints["gossip_bind"] = self.gossip.bound
            if self.metrics is not None:
                GossipMetrics.of(self.gossip.agent, self.metrics.registry)
        log.info("node %s serving on %s (%s)", self.config.name, self.endpoints["bind"], self.probe.reason)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        tasks = [asyncio.create_task(c) for c in (self._receive(), self._publish(), self._scrape())]
        for model in self.config.preload:
            tasks.append(asyncio.create_task(self._preload(model)))
        if self.gossip is not None and self.config.prewarming.enabled:
            tasks.append(asyncio.create_task(self._prewarm_as_peer()))
        watchdog = sdnotify.start_watchdog()  # fed by this loop: a stuck loop gets restarted
        sdnotify.ready(f"node {self.config.name} serving on {self.endpoints['bind']}", self.endpoints)
        await self._stopping.wait()
        sdnotify.stopping()
        await sdnotify.stop_watchdog(watchdog)
        log.info("node %s stopping", self.config.name)
        for task in [*tasks, *self.active.values()]:
            task.cancel()
        await asyncio.gather(*tasks, *self.active.values(), return_exceptions=True)
        await self.manager.close()
        if self.gossip is not None:
            await self.gossip.stop()
        self.router.close()
        self.pub.close()
        stop_zap(self.ctx)
        self.ctx.term()
        self.probe.close()

    def stop(self) -> None:
        self._stopping.set()

    def _bind(self) -> None:
        try:
            # the launcher's listening socket if it handed one down (activation.py)
            self.endpoints["bind"] = activation.bind(self.router, self.config.bind)
        except zmq.ZMQError as exc:
            raise ConfigError(f"cannot bind {self.config.bind} ({exc.strerror}): stop whatever uses it "
                              "or choose another address with --bind") from None
        for address in self.config.publish_to:
            self.pub.connect(address)

    def prewarm(self, order: Prewarm, by: str) -> bool:
        """Load `order.model` ahead of demand (a coordinator's order, or our own in gossip mode):
        False, doing nothing, if it is here already or cannot fit now (NodeLearning.take_prewarm)."""
        model = order.model
        taken, detail = self.learning.take_prewarm(order, by, model in self.manager.instances,
                                                   self.manager.can_host(model), self.catalog, time.monotonic())
        if not taken:
            log.info("pre-warm of %s by %s skipped: %s", model, by, detail)
            return False
        self._event("prewarm", detail)
        self._spawn(self._preload(model, list(order.evict)))
        return True

    async def _prewarm_as_peer(self) -> None:
        """Gossip mode with pre-warming: every TICK_S, load here what this peer's own forecast
        says its holders cannot absorb (NodeLearning.peer_round)."""
        gossip = self.gossip
        assert gossip is not None

        def view() -> ClusterView:  # built only when a round is due
            return gossip.view(self.local_state())

        while True:
            await asyncio.sleep(PREWARM_TICK_S)
            for order in self.learning.peer_round(view, self.config.name, time.monotonic()):
                self.prewarm(order_message(order), self.config.name)

    def _event(self, kind: str, detail: str) -> None:
        """A node's own event: its detail names it first (`by=`), as a secured observer requires
        of a node's events (daemons/bus/authz.py `claimed`)."""
        self.announce(ClusterEvent(kind, self.config.name, f"by={self.config.name};{detail}", time.time()))

    async def _preload(self, model: str, evict: list[str] | None = None) -> None:
        if evict:
            await self.manager.evict_idle(evict)
        try:
            instance, _ = await self.manager.acquire(model)
            self.manager.release(instance)
        except BackendRequestError as exc:
            log.error("preloading %s failed: %s", model, exc)

    # ----- requests ----------------------------------------------------------------
    async def _receive(self) -> None:
        while True:
            frames, peer = authenticated(await self.router.recv_multipart(copy=not self.security.enabled))
            parts = split_router_frames(frames)
            if parts is None:
                continue
            identity, frame = parts
            env = parse_frame(frame, peer=identity.hex()[:16])
            if env is None:
                continue
            if self.security.enabled and not guard(peer, env.type, env.sender, env.body):
                continue  # CURVE on: the authenticated sender may not say this (daemons/bus/authz.py)
            if isinstance(env.body, Infer):
                self._accept(identity, env.body)
            elif isinstance(env.body, Probe) and self.gossip is not None:
                self._spawn(self.gossip.answer_probe(identity, env.body))
            elif isinstance(env.body, StatusRequest):
                await self._reply(identity, self._status_reply(), env.id)
            elif isinstance(env.body, WitnessQuery):
                self._spawn(self._witness(identity, env.body, env.id))
            elif isinstance(env.body, Cancel):
                self._cancel(env.body)
            elif isinstance(env.body, Migrate):
                self._migrate(env.body)
            elif isinstance(env.body, Resume):
                self._resume(identity, env.body)
            elif isinstance(env.body, EpochNotice):
                self._learn_epoch(env.body.epoch, f"notice from {env.body.coordinator}")
            elif isinstance(env.body, Prewarm):
                self.prewarm(env.body, env.sender)
            else:
                log.warning("dropped %s message: a node does not take them", env.type)

    def _accept(self, identity: bytes, request: Infer) -> None:
        """Take an Infer: the first of these rules that applies decides what happens to it.

        1. Running here already (in `active`: served, or being placed): a retry or a race;
           the asker is attached to the one run (`_attach`). First, so that nothing below
           can start a request twice, whatever its epoch.
        2. Finished here with success (the completed cache): answered again from the cache,
           not run twice. Before the epoch check: the work is done, and replaying its
           answer decides nothing a newer coordinator could contradict.
        3. Placed in an epoch older than the newest seen: refused with `stale_epoch`. After
           1 and 2 (a deposed coordinator's retry of old work still gets its answer), before
           anything new starts: a deposed coordinator's decisions never run.
        4. Otherwise the node learns the placement's epoch (it passed rule 3, so it is the
           newest), and the request becomes a task in `active` until it ends:
           - gossip mode placing it (`GossipMode.places`: no action, hops left): gossip
             mode serves it here or forwards it;
           - else it is served here: an action means someone placed it here already
             (a coordinator or a peer), and a request out of hops must stop travelling.
        """
        rid = request.request_id
        if rid in self.active:
            self._attach(identity, rid)
            return
        done = self.completed.get(rid)
        if done is not None:  # a retry of a request we finished: answer again, don't run it twice
            log.warning("duplicate request %s answered from the completed cache", rid,
                        extra={"SCHEDCTL_REQUEST_ID": rid})
            self._spawn(self._replay(identity, done))
            return
        why = self.fence.stale(request.epoch)
        if why is not None:
            self._spawn(self._reply(identity, Error(rid, "stale_epoch", why, self.config.name), rid))
            return
        self._learn_epoch(request.epoch, f"placement {rid}")
        if request.hops == 0:  # a request entering the cluster here (not one a peer forwarded)
            self.learning.arrived(request.model, time.monotonic())
        if self.gossip is not None and self.gossip.places(request):
            work = self.gossip.place(identity, request)
        else:
            work = self._serve_request(identity, request)
        task = asyncio.create_task(work)
        self.active[request.request_id] = task
        self._changed.set()
        task.add_done_callback(lambda _: self._finished(request.request_id))

    def _attach(self, identity: bytes, rid: str) -> None:
        """A duplicate Infer of a request running here: its asker hears the one run, never a second."""
        listeners = self._listeners.get(rid)
        if listeners is None:  # we are placing or forwarding it: the first asker gets the answers
            log.warning("duplicate request %s ignored: already being placed", rid, extra={"SCHEDCTL_REQUEST_ID": rid})
            return
        if identity not in listeners and len(listeners) < MAX_LISTENERS:
            listeners.append(identity)
        log.info("duplicate request %s attached to the running one, not served twice", rid,
                 extra={"SCHEDCTL_REQUEST_ID": rid})
        self._spawn(self._reply(identity, self._progress(rid), rid))

    def _cancel(self, cancel: Cancel) -> None:
        """Stop a request another node serves: its task is cancelled, which closes the backend
        stream and releases the instance; a Cancel naming another node is relayed to it."""
        rid = cancel.request_id
        served = self._served.get(rid)
        if cancel.node != self.config.name and not (served is not None and served.node == cancel.node):
            if self.gossip is not None:
                self.gossip.relay_cancel(cancel)
            return
        task = self.active.get(rid)
        if task is None or rid in self._cancelled:
            return  # finished already, or never here: nothing to free
        log.info("cancelling %s: %s", rid, cancel.reason or "cancelled by its client",
                 extra={"SCHEDCTL_REQUEST_ID": rid})
        self._cancelled.add(rid)
        task.cancel()

    def _learn_epoch(self, epoch: int, source: str) -> None:
        was = self.fence.epoch
        if self.fence.learn(epoch):
            log.info("coordinator epoch %d (was %d) from %s", epoch, was, source)

    async def _witness(self, identity: bytes, query: WitnessQuery, msg_id: str) -> None:
        """Vote on a takeover: granted when the coordinator named in `query.peer` is silent to us too."""
        if not query.peer.startswith(("tcp://", "ipc://")):
            granted, reason = False, f"{query.peer[:64]!r} is no coordinator endpoint"
        elif self._witness_probes >= MAX_WITNESS_PROBES:
            granted, reason = False, "busy"
        else:
            self._witness_probes += 1
            try:
                granted, reason = await self._probe(query.peer, probe_window(query.probe_s))
            finally:
                self._witness_probes -= 1
        log.info("witness vote for %s taking epoch %d: %s (%s)", query.candidate, query.epoch,
                 "granted" if granted else "denied", reason)
        await self._reply(identity, WitnessVote(self.config.name, self.fence.epoch, granted, reason), msg_id)

    async def _probe(self, endpoint: str, timeout_s: float) -> tuple[bool, str]:
        """(granted, why): ask `endpoint` for its status; granted if it stays silent."""
        sock = make_socket(self.ctx, zmq.DEALER, curve=self.security.client)
        try:
            sock.connect(endpoint)
            await sock.send(encode(StatusRequest(), self.config.name), flags=zmq.DONTWAIT)
            return witness_vote(bool(await sock.poll(int(timeout_s * 1000))), endpoint, timeout_s)
        except zmq.ZMQError as exc:
            return True, f"{endpoint}: {exc.strerror}"
        finally:
            sock.close(0)

    async def _replay(self, identity: bytes, done: Done) -> None:
        await self._reply(identity, FirstToken(done.request_id, self.config.name), done.request_id)
        await self._reply(identity, done, done.request_id)

    def _remember(self, done: Done) -> None:
        self.completed[done.request_id] = done
        if len(self.completed) > COMPLETED_CACHE:
            self.completed.popitem(last=False)

    def _finished(self, request_id: str) -> None:
        self.active.pop(request_id, None)
        self._cancelled.discard(request_id)
        self._changed.set()

    # ----- the node's side of gossip mode (HostNode) ----------------------------------
    def local_state(self) -> NodeState:
        return self.snapshot()

    async def serve_locally(self, client: bytes, request: Infer) -> bool:
        if not self.manager.can_host(request.model):
            return False
        await self._serve_request(client, request)
        return True

    async def send(self, client: bytes, frame: bytes) -> None:
        try:
            await self.router.send_multipart([client, frame], flags=zmq.DONTWAIT)
        except zmq.ZMQError as exc:
            log.warning("could not relay an answer: %s", exc.strerror)

    def announce(self, event: ClusterEvent) -> None:
        self._spawn(self._send_event(event))

    def _status_reply(self) -> StatusReply:
        info: dict[str, Any] = {"epoch": self.fence.epoch}
        if self.gossip is not None:
            return self.gossip.status_reply(info)
        return StatusReply("node", [to_dict(self.snapshot())], info)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _serve_request(self, identity: bytes, request: Infer, offset: int = 0, history: str = "") -> None:
        """Serve `request` here; `offset` tokens (text `history`) came before it, elsewhere."""
        rid = request.request_id
        self._listeners[rid] = [identity]
        served = Served(request, self.config.name, offset, history)
        self._served[rid] = served
        beat = asyncio.create_task(self._beat(rid))
        try:
            try:
                answer = await self._answer(served)
            except asyncio.CancelledError:
                if rid not in self._cancelled:
                    raise  # shutting down
                answer = Error(rid, "cancelled", "cancelled: another node serves this request", self.config.name)
            finally:
                beat.cancel()
            if self.metrics is not None:
                self.metrics.answered("ok" if isinstance(answer, Done) else answer.code)
            await self._tell(rid, answer)
        finally:
            self._listeners.pop(rid, None)
            self._served.pop(rid, None)
            await self._end_migration(served)

    async def _answer(self, served: Served) -> Done | Error:
        request = served.request
        rid = request.request_id
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                done: Done | Error | None = await self._run(served)  # replies go to every listener (_tell)
                while done is None:  # switched to a migration's destination; if that fails, resumed here
                    done = await self._hand_over(served) or await self._run(served)
            if isinstance(done, Done):
                self._remember(done)
            return done
        except BackendRequestError as exc:
            if self.metrics is not None:
                self.metrics.backend_error(exc.code)
            return Error(rid, exc.code, str(exc), self.config.name)
        except TimeoutError:
            return Error(rid, "timeout", f"no answer within {self.config.request_timeout_s:.0f} s", self.config.name)

    async def _beat(self, rid: str) -> None:
        """Progress of one request, every PROGRESS_EVERY_S until its answer (module doc: why)."""
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            await self._tell(rid, self._progress(rid))

    def _progress(self, rid: str) -> Progress:
        served = self._served.get(rid)
        if served is None:
            return Progress(rid, self.config.name, 0)
        return Progress(rid, served.node, served.tokens)  # after a handover: the destination's

    async def _tell(self, rid: str, body: Any) -> None:
        """Send `body` to everyone waiting on request `rid` served here. A request resumed here
        for a migration's source that is gone (and nobody else) is stopped: nobody would hear it,
        and its client retries it elsewhere."""
        listeners = list(self._listeners.get(rid, ()))
        heard = [await self._reply(identity, body, rid) for identity in listeners]
        served = self._served.get(rid)
        if listeners and not any(heard) and served is not None and served.offset:
            self._cancel(Cancel(rid, self.config.name, "the migration's source is gone"))

    async def _run(self, served: Served) -> Done | None:
        """Generate the rest of `served` here: its Done, or None once a migration switched it."""
        request = served.request
        start = time.monotonic()
        ready = self.manager.ready(request.model)  # as the request arrives, before any wait
        if not served.timings and self.learning.first_use(request.model, ready):
            self._event("prewarm_hit", f"model={request.model};request={request.request_id}")
        instance, cold = await self.manager.acquire(request.model)
        action = served_action(request.action, cold, ready)
        log.debug("serving %s with %s", request.request_id, action, extra={
            "SCHEDCTL_REQUEST_ID": request.request_id, "SCHEDCTL_MODEL": request.model,
            "SCHEDCTL_ACTION": action, "SCHEDCTL_NODE": self.config.name})
        try:
            queued = time.monotonic()
            await self.slots.acquire(request.model, request.priority)  # max_running: classes wait here
            slot_wait_s = time.monotonic() - queued
        except asyncio.CancelledError:
            self.manager.release(instance)
            raise
        try:
            stream = asyncio.create_task(self._stream(served, instance))
            instance.streams.add(stream)
            await asyncio.wait({stream})
        except asyncio.CancelledError:
            stream.cancel()
            raise
        finally:
            self.slots.release(request.model)
            instance.streams.discard(stream)
            self.manager.release(instance)
        if stream.cancelled():  # the instance died under us (ModelManager._fail)
            raise BackendRequestError("backend_died", instance.failure or "backend instance died")
        tokens, reason, first_s = stream.result()
        if not served.timings:  # the first run here: a handover's Done keeps its figures
            served.action, served.run_t = action, start
            served.timings = {"load_wait_s": first_s[0] - start, "ttft_s": first_s[1] - start}
            if self.config.max_running:  # its wait in this node's slot queue (part of load_wait_s)
                served.timings["slot_wait_s"] = slot_wait_s
        if tokens == SWITCHED:
            return None  # switched: the destination's Done will carry this run's figures
        timings = {**served.timings, "total_s": time.monotonic() - start}
        if not served.offset:  # a migration's destination re-prefilled more than a prompt: not comparable
            self.learning.served(request.model, timings, served.tokens)
        return Done(request.request_id, self.config.name, served.tokens, reason, served.action or action,
                    request.hops, timings, request.decided_by)

    async def _stream(self, served: Served, instance: Instance) -> tuple[int, str, tuple[float, float]]:
        """Stream the rest of `served` from the backend: (tokens, finish reason, (start, first
        token)); tokens SWITCHED when a migration's switch stopped it at a token boundary."""
        request = served.request
        rid = request.request_id
        began = time.monotonic()
        first = 0.0
        # aclosing: a cancelled stream closes its HTTP response now, so the backend stops generating.
        stream = cast(AsyncGenerator[Any, None],  # Backend.stream is an async generator: it can be closed
                      instance.backend.stream(request.prompt + served.generated,
                                              request.max_new_tokens - served.tokens))
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                if isinstance(item, Finished):  # before the switch: a finished request has nothing to move
                    return item.generated_tokens, item.finish_reason, (began, first or time.monotonic())
                if served.switch.is_set():  # this token is dropped: the destination generates it
                    return SWITCHED, "", (began, first or time.monotonic())
                index = served.tokens
                served.texts.append(item.text)
                served.last_token_t = time.monotonic()
                if not first:
                    first = served.last_token_t
                    if index == 0:  # a resumed request's client has its first token already
                        await self._tell(rid, FirstToken(rid, self.config.name, item.text))
                if request.stream:
                    await self._tell(rid, StreamToken(rid, self.config.name, index, item.text))
        raise BackendRequestError("incomplete_generation", "stream ended without its final event")

    # ----- live migration (daemons/node/migration.py: the rules and their sources) ----------
    def _migrate(self, order: Migrate) -> None:
        """Source side: start moving a request served here to `order.to_node` (rounds first)."""
        rid = order.request_id or pick([(r, s.request.model, s.tokens, s.request.max_new_tokens - s.tokens)
                                        for r, s in self._served.items()
                                        if s.order is None and s.node == self.config.name], order.model)
        served = self._served.get(rid)
        why = refusal(order, self.config.name, rid, served is not None,
                      served is not None and (served.order is not None or served.node != self.config.name),
                      served.tokens if served is not None else 0)
        if served is None or why:
            log.warning("migration of %s refused: %s", rid or "a request", why, extra={"SCHEDCTL_REQUEST_ID": rid})
            return
        log.info("migrating %s to %s (%s)", rid, order.to_node, order.reason or "asked",
                 extra={"SCHEDCTL_REQUEST_ID": rid, "SCHEDCTL_ACTION": "MIGRATE"})
        served.order, served.started_t = order, time.monotonic()
        served.link = make_socket(self.ctx, zmq.DEALER, curve=self.security.client)
        served.link.connect(order.endpoint)
        served.migration = asyncio.create_task(self._migration_rounds(served))

    async def _migration_rounds(self, served: Served) -> None:
        """Prefill rounds on the destination while this node keeps decoding, then the switch."""
        assert served.order is not None
        rid = served.request.request_id
        rounds = Rounds()
        try:
            while True:
                sent = served.tokens
                await served.link.send(encode(self._resume_msg(served, rounds.done, False), self.config.name, rid))
                await self._round_answer(served, rounds.done)
                if rounds.after_round(sent, served.tokens) is Step.SWITCH:
                    break
            served.rounds = rounds.done
            served.switch.set()  # the stream stops at its next token, then _hand_over
        except (MigrationFailed, zmq.ZMQError) as exc:
            log.warning("migration of %s to %s abandoned: %s; it stays here", rid, served.order.to_node, exc,
                        extra={"SCHEDCTL_REQUEST_ID": rid})
            self._drop_migration(served)

    async def _round_answer(self, served: Served, round_: int) -> ResumeReady:
        while True:
            env = await self._from_destination(served)
            if isinstance(env.body, ResumeReady) and env.body.round == round_:
                return env.body

    async def _from_destination(self, served: Served) -> Any:
        """The next message about `served` from its migration's destination; MigrationFailed on
        an Error or after SILENCE_S without a word (it sends Progress every second)."""
        rid = served.request.request_id
        while True:
            if not await served.link.poll(int(SILENCE_S * 1000)):
                raise MigrationFailed(f"the destination was silent for {SILENCE_S:g} s")
            env = parse_frame(await served.link.recv(), peer="migration destination")
            if env is None or getattr(env.body, "request_id", None) != rid:
                continue
            if isinstance(env.body, Error) and env.body.code == "cancelled":
                raise MigrationCancelled(env.body.message)
            if isinstance(env.body, Error):
                raise MigrationFailed(f"the destination answered {env.body.code}: {env.body.message[:200]}")
            return env

    def _drop_migration(self, served: Served) -> None:
        if served.link is not None:
            served.link.close(0)
        served.link, served.order = None, None
        served.switch.clear()
        served.node = self.config.name

    async def _end_migration(self, served: Served) -> None:
        """The request ended here: stop its rounds, if any, and close the link."""
        if served.migration is not None and not served.migration.done():
            served.migration.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await served.migration
        if served.link is not None:
            if served.node != self.config.name:  # cancelled after the switch: stop the destination too
                with contextlib.suppress(zmq.ZMQError):
                    await served.link.send(encode(Cancel(served.request.request_id, served.node, "cancelled"),
                                                  self.config.name), flags=zmq.DONTWAIT)
            served.link.close(linger=500)
            served.link = None

    def _resume_msg(self, served: Served, round_: int, final: bool) -> Resume:
        req = served.request
        return Resume(req.request_id, req.model, req.prompt, served.generated, served.tokens,
                      req.max_new_tokens - served.tokens, round_, final)

    async def _hand_over(self, served: Served) -> Done | Error | None:
        """The switch: the client hears a Handover, the destination continues, and its tokens and
        Done reach the client through us. If the destination fails, this node resumes the request
        from the last token the client has (None: _answer runs it here again); if the client's
        Cancel stopped it there (a gossip peer relays a Cancel to the node it names), it ends."""
        order = served.order
        assert order is not None
        rid = served.request.request_id
        switch_t = time.monotonic()
        relay = Relay(served.tokens, served.last_token_t)
        served.node = order.to_node
        await self._tell(rid, Handover(rid, self.config.name, order.to_node, served.tokens))
        try:
            await served.link.send(encode(self._resume_msg(served, served.rounds, True), self.config.name, rid))
            done = await self._relay(served, relay)
        except MigrationCancelled as exc:
            self._drop_migration(served)
            return Error(rid, "cancelled", f"cancelled on {order.to_node}: {exc}"[:500], order.to_node)
        except (MigrationFailed, zmq.ZMQError) as exc:
            log.warning("migration of %s to %s failed after the switch (%s): resuming it here at token %d",
                        rid, order.to_node, exc, served.tokens, extra={"SCHEDCTL_REQUEST_ID": rid})
            with contextlib.suppress(zmq.ZMQError):  # it may be alive and still generating: stop it
                await served.link.send(encode(Cancel(rid, order.to_node, "migration abandoned"), self.config.name,
                                              rid), flags=zmq.DONTWAIT)
            self._drop_migration(served)
            await self._tell(rid, Handover(rid, order.to_node, self.config.name, served.tokens))
            return None
        served.link.close(0)  # the destination is done with it: nothing left to cancel there
        served.link = None
        first_t = relay.first_t if relay.first_t is not None else time.monotonic()
        figures = {"migration_resume_s": first_t - switch_t, "migration_gap_s": relay.gap_s,
                   "migration_total_s": first_t - served.started_t}
        self.announce(ClusterEvent("migrated", self.config.name,
                                   detail(self.config.name, rid, order.to_node, relay.switched_at, figures),
                                   time.time()))
        log.info("migrated %s to %s at token %d: resumed in %.3f s, longest gap %.3f s", rid, order.to_node,
                 relay.switched_at, figures["migration_resume_s"], relay.gap_s, extra={"SCHEDCTL_REQUEST_ID": rid})
        timings = {**served.timings, "total_s": time.monotonic() - served.run_t, **figures,
                   "migration_tokens": float(relay.switched_at), "migration_rounds": float(served.rounds)}
        return Done(rid, done.node, served.tokens, done.finish_reason, served.action, served.request.hops, timings,
                    served.request.decided_by)

    async def _relay(self, served: Served, relay: Relay) -> Done:
        """Pass the destination's tokens on (in order, once each) until its Done."""
        rid = served.request.request_id
        while True:
            body = (await self._from_destination(served)).body
            if isinstance(body, StreamToken):
                verdict = relay.token(body.index, time.monotonic())
                if verdict is Verdict.BROKEN:
                    raise MigrationFailed(f"token {body.index} arrived where {relay.next_index} was due")
                if verdict is Verdict.PASS:
                    served.texts.append(body.text)
                    served.last_token_t = relay.last_token_t
                    if served.request.stream:
                        await self._tell(rid, body)
            elif isinstance(body, Done):
                if body.tokens != served.tokens:
                    raise MigrationFailed(f"it reported {body.tokens} tokens, {served.tokens} reached us")
                return body

    def _resume(self, identity: bytes, msg: Resume) -> None:
        """Destination side: a round prefills the context and answers ResumeReady; the final
        Resume is served like a request, from token `msg.tokens` on, its replies to the source."""
        rid = msg.request_id
        busy = rid in self.active or rid in self._rounds
        if msg.final and not busy:
            request = Infer(rid, msg.model, msg.prompt, msg.tokens + msg.max_new_tokens, "MIGRATE", stream=True)
            task = asyncio.create_task(self._serve_request(identity, request, msg.tokens, msg.generated))
            self.active[rid] = task
            self._changed.set()
            task.add_done_callback(lambda _: self._finished(rid))
        elif not busy and len(self._rounds) < MAX_RESUME_ROUNDS:
            self._rounds.add(rid)
            self._spawn(self._prefill_round(identity, msg))
        else:
            why = "it is running here already" if busy else "too many migrations under way here"
            self._spawn(self._reply(identity, Error(rid, "busy", f"cannot take over {rid}: {why}",
                                                    self.config.name), rid))

    async def _prefill_round(self, identity: bytes, msg: Resume) -> None:
        """Recompute the context (one generate call, 1 new token thrown away): loads the model
        first if it is not here, and says Progress every second meanwhile."""
        rid = msg.request_id
        beat = asyncio.create_task(self._beat_to(identity, rid))
        try:
            began = time.monotonic()
            async with asyncio.timeout(self.config.request_timeout_s):
                instance, _ = await self.manager.acquire(msg.model)
                loaded = time.monotonic()
                try:
                    stream = cast(AsyncGenerator[Any, None], instance.backend.stream(msg.prompt + msg.generated, 1))
                    async with contextlib.aclosing(stream) as items:
                        async for _ in items:
                            pass
                finally:
                    self.manager.release(instance)
            answer: Any = ResumeReady(rid, self.config.name, msg.round, msg.tokens, time.monotonic() - loaded,
                                      loaded - began)
        except BackendRequestError as exc:
            answer = Error(rid, exc.code, str(exc), self.config.name)
        except TimeoutError:
            answer = Error(rid, "timeout", "the migration round took too long", self.config.name)
        finally:
            beat.cancel()
            self._rounds.discard(rid)
        await self._reply(identity, answer, rid)

    async def _beat_to(self, identity: bytes, rid: str) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            await self._reply(identity, Progress(rid, self.config.name, 0), rid)

    async def _reply(self, identity: bytes, body: Any, msg_id: str) -> bool:
        """Send `body` to `identity`; False if it could not go."""
        try:
            await self.router.send_multipart([identity, encode(body, self.config.name, msg_id)],
                                             flags=zmq.DONTWAIT)
        except zmq.ZMQError as exc:  # the asker is gone (ROUTER_MANDATORY) or its queue is full
            log.warning("could not answer %s with %s: %s", msg_id, body.TYPE, exc.strerror,
                        extra={"SCHEDCTL_REQUEST_ID": msg_id})
            return False
        return True

    # ----- state -------------------------------------------------------------------
    def _memory_total(self) -> int:
        return sum(g.memory_total for g in self.probe.read(self.manager.ledger_used()))

    def snapshot(self) -> NodeState:
        """The node's state now, at the sequence number of its last publication."""
        readings = self.probe.read(self.manager.ledger_used(), self.manager.busy_ratio())
        gpus = [GpuState(g.index, g.name, g.memory_total, g.memory_used, g.utilization) for g in readings]
        models = [self._model_state(i, self.slots.waiting(i.model)) for i in self.manager.instances.values()]
        return NodeState(
            node=self.config.name, endpoint=self.config.endpoint, gen=self.gen, seq=self.seq,
            gpus=gpus, models=models, queue_depth=sum(m.queue_depth for m in models),
            gpu_backend=self.probe.backend, scheduler=self.config.scheduler,
            in_flight=len(self.active) - self._handed_over(), catalog=self.catalog.entries(),
            gpu_utilization=compute_utilization(readings),
            waiting_by_priority={str(p): n for p, n in self.slots.waiting_by_priority().items()},
            estimates=self.learning.estimates())

    def _handed_over(self) -> int:
        """Requests this node only relays now: their migration's destination generates them."""
        return sum(1 for s in self._served.values() if s.node != self.config.name)

    @staticmethod
    def _model_state(instance: Instance, held: int) -> ModelState:
        """`held`: requests waiting in this node's slot queue, on top of the backend's queue."""
        waiting = instance.running if instance.state == "loading" else instance.queue_size + held
        return ModelState(instance.model, instance.state, waiting, instance.running,
                          instance.footprint, instance.last_used)

    async def _publish(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.config.publish_interval_s)
            self._changed.clear()
            self.seq += 1
            state = self.last_state = self.snapshot()
            with contextlib.suppress(zmq.Again):
                await self.pub.send(encode(state, self.config.name), flags=zmq.DONTWAIT)
            if self.gossip is not None:
                self.gossip.publish(state)
            self._notify_status(state)
            await asyncio.sleep(MIN_PUBLISH_GAP_S)

    async def _send_event(self, event: ClusterEvent) -> None:
        try:
            await self.pub.send(encode(event, self.config.name), flags=zmq.DONTWAIT)
        except zmq.ZMQError as exc:  # closing down: an observer then misses a verdict, never worse
            log.debug("could not publish %s about %s: %s", event.kind, event.node, exc.strerror)

    def _notify_status(self, state: NodeState) -> None:
        loaded = sum(m.state == "ready" for m in state.models)
        text = f"{loaded} model(s) ready, {state.in_flight} request(s) in flight, queue {state.queue_depth}"
        if text != self._status:  # `systemctl status` shows it; send only changes
            self._status = text
            sdnotify.status(text)

    async def _scrape(self) -> None:
        while True:
            await self.manager.refresh_load()
            await asyncio.sleep(min(0.5, self.config.publish_interval_s))


def compute_utilization(readings: list[GpuReading]) -> float | None:
    """The node's GPU compute utilisation, 0..1: the mean over its GPUs; None without one."""
    if not readings:
        return None
    return round(sum(g.utilization for g in readings) / len(readings), 4)


def run(config: NodeConfig, security: Security | None = None, metrics: MetricsConfig | None = None) -> None:
    """Run a node agent until SIGTERM or SIGINT; with `metrics` enabled, its Prometheus
    endpoint runs alongside (on its own thread)."""
    metrics = metrics or MetricsConfig()
    counted = NodeMetrics() if metrics.enabled else None
    # Opened first: a taken port then stops the node before it holds any socket or thread.
    endpoint = serve(counted.registry, metrics.bind) if counted is not None else None
    if endpoint is not None:
        log.info("metrics on http://%s/metrics", endpoint.address)
    try:
        asyncio.run(NodeServer(config, security, counted).serve())
    finally:
        if endpoint is not None:
            endpoint.close()
