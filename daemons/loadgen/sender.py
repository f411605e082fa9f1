"""The open-loop sender: every request leaves at its scheduled time, whatever came before.

One thread owns every socket (ZeroMQ sockets are not thread-safe) and one `zmq.Poller`
(pyzmq perf notes: a blocking poller, not asyncio, for a hot path). The loop:

1. send every request whose scheduled time has come (its pre-encoded frame, DONTWAIT, so
   a slow or dead peer never blocks the clock: a full queue is recorded as `send_failed`);
2. time out requests past `scheduled + timeout_s`, and report progress once a second;
3. encode upcoming frames while there is time, then wait for the next deadline in
   `poll()`, waking for replies. poll() times out in whole milliseconds and overshoots by
   ~0.1 ms, so it sleeps only until `spin_s` (plus the sub-millisecond rest) before a send
   and then spins on poll(0) (config.py has the measurements behind the default);
4. handle replies, but stop draining as soon as the next send is due: sends come first.

In centralized mode a Placement makes the sender send `Infer` to the node's endpoint on a
DEALER made on first use; in gossip mode `Infer` goes straight to an entry peer. With a
standby coordinator, schedule requests follow the active one (coordinators.py). Every
latency is measured from the scheduled time, on the monotonic clock.

Membership. Every MEMBERS_EVERY_S the sender asks one daemon for its view (a StatusRequest
on a link it already has): the active coordinator, or the next live gossip entry peer. A
node that view declares dead (coordinator: not alive; gossip: dead or left) is `gone`: the
requests waiting on it are retried at once (Recorder.node_gone) and, as an entry peer, it
is not chosen again until a view shows it alive. So no request waits for its attempt
timer once any part of the system knows its node is gone; a dropped connection (the link
monitor) is the faster witness of a dead process, the views the witness of a hung or cut
off one. A pull, not a subscription: the sender needs no address beyond those it sends
to, and one small reply every half second costs the cluster nothing measurable.

Duplicates. The recorder names the nodes running a late duplicate of a request another
node serves (Recorder.cancels); the sender sends each a `Cancel` (centralized: to the
node's own endpoint; gossip: through the entry peer it reported through, which relays it).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import os
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from daemons.bus import ConfigError, WireError, decode, encode, make_socket
from daemons.bus.security import CurveClient
from daemons.core.messages import Cancel, Placement, StatusReply, StatusRequest
from daemons.loadgen.config import LoadgenConfig, check_endpoint
from daemons.loadgen.coordinators import CoordinatorSet
from daemons.loadgen.frames import FrameWindow, infer_frame, schedule_frame
from daemons.loadgen.metrics import LoadgenMetrics
from daemons.loadgen.recorder import Recorder, RequestRecord
from daemons.loadgen.results import Progress, Results
from daemons.loadgen.workload import PlannedRequest
from daemons.rundir.requests import ERROR, OK, TIMEOUT

log = logging.getLogger("schedctl.loadgen")

START_LEAD_S = 0.05  # connect and settle before t = 0
MAX_WAIT_S = 0.1  # longest single poll(), so a stop request is seen promptly
DRAIN_BATCH = 256  # replies handled per socket per wake-up, so timeouts and progress run
FILL_MARGIN_S = 0.0005  # stop encoding ahead this long before the next send
AVOID_ENTRY_S = 30.0  # gossip: an entry peer that failed an attempt is skipped this long
LOGGED_MALFORMED = 5  # malformed frames logged one by one; the rest are only counted
MEMBERS_EVERY_S = 0.5  # how often one daemon is asked for its view of the nodes
GONE_STATES = frozenset({"dead", "left"})  # gossip member states that mean "not serving"

ProgressFn = Callable[[Progress], None]


class LinkError(Exception):
    """A node endpoint the sender cannot or will not connect to."""


class _Links:
    """The sender's DEALER sockets, one per endpoint, all registered on one poller.

    Each has a monitor socket on the same poller reporting EVENT_DISCONNECTED: a peer whose
    process dies (kill -9, a crash, a stop) closes its connection at once, and the requests
    waiting on it are retried then instead of after attempt_timeout_s (a paused or cut-off
    peer closes nothing: for those the attempt timer stays the only witness).
    """

    def __init__(self, max_sockets: int, curve: CurveClient | None = None) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self._curve = curve  # with [security]: every link is a CURVE client
        self.poller = zmq.Poller()
        self._sockets: dict[str, Any] = {}
        self._endpoints: dict[Any, str] = {}  # socket -> endpoint, to tell where a reply came from
        self._monitors: dict[Any, str] = {}  # monitor socket -> endpoint of the link it watches
        self.down: set[str] = set()  # endpoints whose connection dropped and has not come back
        self._max = max_sockets

    def get(self, endpoint: str) -> Any:
        sock = self._sockets.get(endpoint)
        if sock is not None:
            return sock
        if len(self._sockets) >= self._max:
            raise LinkError(f"more than {self._max} endpoints; raise max_nodes")
        try:
            check_endpoint(endpoint, "endpoint")
        except ConfigError as exc:
            raise LinkError(str(exc)) from None
        sock = make_socket(self.ctx, zmq.DEALER, curve=self._curve)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise LinkError(f"cannot connect to {endpoint!r}: {exc}") from None
        self._sockets[endpoint] = sock
        self._endpoints[sock] = endpoint
        self.poller.register(sock, zmq.POLLIN)
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
        self._monitors[monitor] = endpoint
        self.poller.register(monitor, zmq.POLLIN)
        return sock

    def endpoint(self, sock: Any) -> str:
        return self._endpoints.get(sock, "")

    def lost(self, sock: Any) -> str | None:
        """For a monitor socket: the endpoint if its connection is now down ("" if not); None
        for a data socket."""
        endpoint = self._monitors.get(sock)
        if endpoint is None:
            return None
        while sock.poll(0):
            if recv_monitor_message(sock)["event"] == zmq.EVENT_DISCONNECTED:
                self.down.add(endpoint)
            else:
                self.down.discard(endpoint)
        return endpoint if endpoint in self.down else ""

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.disable_monitor()
            sock.close(linger=0)
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors.clear()
        self._sockets.clear()
        self.ctx.term()


class Sender:
    """Sends one schedule open-loop and records every request's outcome (see module doc)."""

    def __init__(self, config: LoadgenConfig, schedule: list[PlannedRequest],
                 progress: ProgressFn | None = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_start: Callable[[float], None] | None = None, curve: CurveClient | None = None,
                 metrics: LoadgenMetrics | None = None) -> None:
        _check_schedule(schedule)
        self._on_start = on_start
        self.cfg = config
        self.schedule = schedule
        coordinators = (CoordinatorSet(config.coordinators) if config.mode == "centralized" else None)
        self.rec = Recorder(schedule, config.timeout_s, config.mode, config.retries, config.attempt_timeout_s,
                            coordinators, config.coordinator_timeout_s, config.coordinator_retries)
        if metrics is not None:  # counted as the recorder decides (on this thread)
            self.rec.observer = metrics
            metrics.in_flight = lambda: self.rec.in_flight
        self._progress = progress
        self._stop = stop
        self._clock = clock
        self._t0 = 0.0
        self._next = 0
        self._avoid: dict[str, float] = {}  # gossip entry endpoint -> avoided until (run clock)
        self._gone: dict[str, str] = {}  # node declared dead by a view -> its endpoint
        self._suspect: set[str] = set()  # gossip: endpoints of suspected members (chosen last)
        self._node_endpoints: dict[str, str] = {}  # node name -> endpoint, from placements and views
        self._next_members = 0.0
        self._asked_members = 0  # rotates the gossip peer asked
        self._links = _Links(config.max_nodes + len(config.entry) + 1, curve)
        make = self._schedule_frame if config.mode == "centralized" else self._gossip_frame
        self._window = FrameWindow(schedule, make)

    def now(self) -> float:
        """Seconds since t = 0 on the monotonic clock."""
        return self._clock() - self._t0

    def run(self) -> Results:
        """Send the whole schedule, wait for every outcome, close every socket."""
        restore_priority = _set_priority(self.cfg.nice)  # before the first socket starts the I/O thread
        try:
            first_hops = list(self.cfg.coordinators) if self.cfg.mode == "centralized" else list(self.cfg.entry)
            for endpoint in first_hops:
                self._links.get(endpoint)
            self._window.fill(0, lambda: True)
            # Objects alive now (schedule, records, frames) never become garbage during the run:
            # freezing them keeps the cyclic GC from scanning them in the middle of a burst.
            gc.collect()
            gc.freeze()
            self._t0 = self._clock() + START_LEAD_S
            t0_wall = time.time() + (self._t0 - self._clock())
            if self._on_start is not None:
                # Others that act on the run's clock (a fault injector) start from the same t = 0.
                self._on_start(self._t0)
            self._loop()
            return Results(self.rec.records, self.cfg.mode, self.cfg.name, t0_wall, self.now(),
                           dict(self.rec.ignored))
        finally:
            gc.unfreeze()
            self._links.close()
            restore_priority()

    def _loop(self) -> None:
        n = len(self.schedule)
        next_tick = 0.0
        while True:
            now = self._send_due()
            if self._stop is not None and self._stop.is_set():
                self.rec.cancel(now, "the run was stopped before this request finished")
                return
            self.rec.expire(now)
            self.rec.check_attempts(now)
            self.rec.check_placements(now)
            self._resend_due(now)
            if now >= self._next_members:
                self._ask_members()
                self._next_members = now + MEMBERS_EVERY_S
            if now >= next_tick:
                self._report(now)
                next_tick = now + self.cfg.progress_interval_s
            if self._next >= n and self.rec.finished >= n:
                self._report(now)
                return
            send_at = self.schedule[self._next].t_s if self._next < n else math.inf
            fill_until = send_at - FILL_MARGIN_S
            self._window.fill(self._next, lambda: self.now() < fill_until)  # noqa: B023 (called here only)
            wake = min(send_at, self.rec.next_expiry(), next_tick, self.now() + MAX_WAIT_S)
            for sock, _ in self._wait(wake, send_at):
                lost = self._links.lost(sock)
                if lost is None:
                    self._drain(sock, send_at)
                elif lost:
                    self._link_lost(lost)

    def _send_due(self) -> float:
        """Send every request whose time has come; returns the time after the last check."""
        schedule, records, n = self.schedule, self.rec.records, len(self.schedule)
        now = self.now()
        while self._next < n and schedule[self._next].t_s <= now:
            i = self._next
            self._next += 1
            sock = self._first_hop(schedule[i].request_id)
            if self.cfg.mode == "gossip":
                records[i].node_endpoint = self._links.endpoint(sock)  # where this attempt waits
            self._send(sock, self._window.take(i), records[i], now, first=True, to=self._coordinator())
            now = self.now()
        return now

    def _coordinator(self) -> str:
        """The coordinator endpoint schedule requests go to now ("" in gossip mode)."""
        return self.rec.coordinators.active if self.rec.coordinators is not None else ""

    def _first_hop(self, request_id: str) -> Any:
        if self.cfg.mode == "centralized":
            return self._links.get(self._coordinator())
        # The entry peer is a function of the request alone, so every run picks the same one,
        # skipping peers that are down or recently failed an attempt (a dead entry would stall
        # every request it is picked for until its attempt timer fires).
        return self._links.get(self._entry_from(zlib.crc32(request_id.encode())))

    def _entry_from(self, start: int) -> str:
        """The best entry peer from position `start` on: a healthy one, else one that is only
        suspected, else one that recently failed an attempt; one known down only when all are."""
        entry, now = self.cfg.entry, self.now()
        order = [entry[(start + k) % len(entry)] for k in range(len(entry))]
        return min(order, key=lambda e: self._entry_rank(e, now))  # min keeps the first of equals

    def _entry_rank(self, endpoint: str, now: float) -> int:
        if not self._usable(endpoint):
            return 3
        if self._avoid.get(endpoint, -math.inf) > now:
            return 2
        return 1 if endpoint in self._suspect else 0

    def _usable(self, endpoint: str) -> bool:
        """Not known down: its connection is up (or never tried) and no view declared it dead."""
        return endpoint not in self._links.down and endpoint not in self._gone.values()

    def _send(self, sock: Any, frame: bytes, rec: RequestRecord, now: float, first: bool, to: str = "") -> None:
        if first:
            self.rec.on_sent(rec, now, to)
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.rec.finish(rec, ERROR, now, "send_failed", "send queue full: the peer is not reading")
        except zmq.ZMQError as exc:
            self.rec.finish(rec, ERROR, now, "send_failed", str(exc))

    def _wait(self, wake: float, send_at: float) -> list[tuple[Any, int]]:
        """poll() until `wake`, and never past the start of the spin before the next send:
        poll() counts whole milliseconds, and rounding a timer's wake-up up could make it late."""
        now = self.now()
        until_spin_s = send_at - self.cfg.spin_s - now  # inf once everything is sent
        timeout_ms = math.ceil((wake - now) * 1000.0)  # wake is finite: at most MAX_WAIT_S ahead
        if until_spin_s < math.inf:
            timeout_ms = min(timeout_ms, math.floor(until_spin_s * 1000.0))
        events: list[tuple[Any, int]] = self._links.poller.poll(max(0, timeout_ms))
        return events

    def _drain(self, sock: Any, send_at: float) -> None:
        for _ in range(DRAIN_BATCH):
            now = self.now()
            if now >= send_at:
                return
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_reply(parts, now, self._links.endpoint(sock))

    def _on_reply(self, parts: list[bytes], now: float, source: str = "") -> None:
        if len(parts) != 1:
            self._malformed(f"{len(parts)} frames where one was expected")
            return
        try:
            env = decode(parts[0])
        except WireError as exc:
            self._malformed(str(exc))
            return
        if isinstance(env.body, StatusReply):
            self._on_members(env.body, now)
        else:
            action = self.rec.on_reply(env, now, source)
            if action is not None:
                self._forward(*action, now)
        self._resend_due(now)  # and the cancels

    # ----- membership ------------------------------------------------------------------------
    def _ask_members(self) -> None:
        """Ask one daemon for its view of the nodes (module doc: Membership)."""
        if self.cfg.mode == "centralized":
            target = self._coordinator()
        else:
            self._asked_members += 1
            target = self._entry_from(self._asked_members)
            if not self._usable(target):
                return  # every peer is down: nobody to ask
        with contextlib.suppress(zmq.ZMQError, LinkError):
            self._links.get(target).send(encode(StatusRequest(), self.cfg.name), zmq.NOBLOCK)

    def _on_members(self, reply: StatusReply, now: float) -> None:
        if reply.role not in ("coordinator", "gossip-peer"):
            return  # a lone node (not a gossip peer) knows only itself: no verdicts to learn
        for row in reply.nodes:
            node, endpoint = row.get("node"), row.get("endpoint") or ""
            if not isinstance(node, str) or not isinstance(endpoint, str):
                continue
            state = row.get("status") if reply.role == "gossip-peer" else ("alive" if row.get("alive") else "dead")
            if endpoint:
                self._node_endpoints[node] = endpoint
                if state == "suspect":
                    self._suspect.add(endpoint)
                else:
                    self._suspect.discard(endpoint)
            if state in GONE_STATES and node not in self._gone:
                self._gone[node] = endpoint
                self.rec.node_gone(node, endpoint, now)
                log.info("%s declared %s by %s at t=%.3f s: %d request(s) to send again", node, state,
                         reply.role, now, len(self.rec.retry_due))
            elif state == "alive" and node in self._gone:
                del self._gone[node]  # recovered, or restarted
                log.info("%s is alive again (t=%.3f s)", node, now)
        self._resend_due(now)

    def _send_cancels(self) -> None:
        """Cancel every late duplicate the recorder found (module doc: Duplicates)."""
        if not self.rec.cancels:
            return
        cancels, self.rec.cancels = self.rec.cancels, []
        for rid, node, via in cancels:
            if self.cfg.mode == "centralized":
                to = self._node_endpoints.get(node) or via
            else:  # through a peer that can reach it: the one it reported through, if usable
                to = via if via and self._usable(via) else self._entry_from(zlib.crc32(rid.encode()))
            if not to or to in self._links.down or node in self._gone:
                continue  # it is gone: there is nothing left to stop
            with contextlib.suppress(LinkError):
                self._cancel(self._links.get(to), rid, node)

    def _take_cancels(self, rid: str) -> list[tuple[str, str, str]]:
        mine = [c for c in self.rec.cancels if c[0] == rid]
        if mine:
            self.rec.cancels = [c for c in self.rec.cancels if c[0] != rid]
        return mine

    def _cancel(self, sock: Any, rid: str, node: str) -> None:
        frame = encode(Cancel(rid, node, "another node serves this request"), self.cfg.name, msg_id=rid)
        with contextlib.suppress(zmq.ZMQError):  # a peer not reading: the cancel is lost, as it would be
            sock.send(frame, zmq.NOBLOCK)
            log.debug("cancelled %s on %s", rid, node)

    def _resend_due(self, now: float) -> None:
        """Send again, same request id, every request the recorder queued for a retry."""
        if not self.rec.retry_due:
            self._send_cancels()
            return
        due, self.rec.retry_due = self.rec.retry_due, []
        for rec in due:
            if rec.status:
                continue
            if self.cfg.mode == "centralized":
                # The coordinator places it again, on none of the nodes that failed it.
                to = self._coordinator()
                sock = self._links.get(to)
                frame = schedule_frame(rec, self.cfg.name, self.cfg.priority, list(rec.failed_nodes))
            else:
                # The next usable entry peer after the one the last attempt went to; avoid that one.
                if rec.node_endpoint in self.cfg.entry:
                    self._avoid[rec.node_endpoint] = now + AVOID_ENTRY_S
                at = zlib.crc32(rec.request_id.encode()) + rec.attempts
                sock = self._links.get(self._entry_from(at))
                frame = infer_frame(rec, self.cfg.name, action="", priority=self.cfg.priority)
                to = ""
                # Through the same peer, just before the retry: the old run stops before a new one may begin.
                for _, node, _ in self._take_cancels(rec.request_id):
                    self._cancel(sock, rec.request_id, node)
            self.rec.on_resent(rec, now, to)
            if not to:
                rec.node_endpoint = self._links.endpoint(sock)
            self._send(sock, frame, rec, now, first=False)
        self._send_cancels()

    def _link_lost(self, endpoint: str) -> None:
        now = self.now()
        self.rec.link_lost(endpoint, now)
        log.info("connection to %s dropped at t=%.3f s: %d request(s) to send again", endpoint, now,
                 len(self.rec.retry_due))
        self._resend_due(now)

    def _forward(self, rec: RequestRecord, placement: Placement, now: float) -> None:
        """Centralized: the coordinator answered, send the request to the chosen node."""
        try:
            sock = self._links.get(placement.endpoint)
        except LinkError as exc:
            self.rec.finish(rec, ERROR, now, "bad_placement", str(exc))
            return
        self._node_endpoints[placement.node] = placement.endpoint
        frame = infer_frame(rec, self.cfg.name, placement.action, placement.epoch, self.cfg.priority)
        self._send(sock, frame, rec, now, first=False)
        if placement.endpoint in self._links.down:  # its process died since: do not wait for the timer
            self._link_lost(placement.endpoint)

    def _malformed(self, why: str) -> None:
        self.rec.ignored["malformed"] += 1
        if self.rec.ignored["malformed"] <= LOGGED_MALFORMED:
            log.warning("dropped malformed reply: %s", why)

    def _report(self, now: float) -> None:
        if self._progress is None:
            return
        out = self.rec.outcomes
        self._progress(Progress(now, len(self.schedule), self.rec.sent, out[OK], out[ERROR], out[TIMEOUT],
                                self.rec.in_flight, self.rec.records))

    def _schedule_frame(self, req: PlannedRequest) -> bytes:
        return schedule_frame(req, self.cfg.name, self.cfg.priority)

    def _gossip_frame(self, req: PlannedRequest) -> bytes:
        return infer_frame(req, self.cfg.name, action="", priority=self.cfg.priority)


def _set_priority(nice: int) -> Callable[[], None]:
    """Give this thread `nice` (Linux nice values are per thread); returns how to undo it."""
    if nice == 0:
        return lambda: None
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        log.warning("cannot set nice %d (%s; needs root or CAP_SYS_NICE): sending at nice %d",
                    nice, exc.strerror, before)
        return lambda: None

    def restore() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, before)
        except OSError:
            log.warning("cannot restore nice %d after the run", before)

    return restore


def _check_schedule(schedule: list[PlannedRequest]) -> None:
    for a, b in itertools.pairwise(schedule):
        if b.t_s < a.t_s:
            raise ConfigError(f"schedule not in time order at {b.request_id}; sort it by t_s "
                              "(read_schedule_csv does)")
    if len({r.request_id for r in schedule}) != len(schedule):
        raise ConfigError("schedule has a request_id twice; request ids must be unique")


def run(config: LoadgenConfig, schedule: list[PlannedRequest], progress: ProgressFn | None = None,
        stop: threading.Event | None = None, on_start: Callable[[float], None] | None = None,
        curve: CurveClient | None = None, metrics: LoadgenMetrics | None = None) -> Results:
    """Send `schedule` open-loop as `config` says; returns one record per request.

    `progress` is called about once a second (and once at the end) from the sending thread:
    keep it quick. Setting `stop` ends the run early; requests without an outcome are then
    recorded as error `cancelled`. `on_start(t0)` is called once, just before sending, with
    t = 0 on the time.monotonic() clock. `curve` makes every socket a CURVE client (a
    deployed cluster's [security]). `metrics` counts sends and outcomes for Prometheus.
    """
    return Sender(config, schedule, progress, stop, on_start=on_start, curve=curve, metrics=metrics).run()
