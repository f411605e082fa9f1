"""Per-request bookkeeping: every planned request ends in exactly one recorded outcome.

The recorder is the sender's state machine without the sockets, so its rules can be
tested on their own:

    planned ── sent ──(placement)──(first token)── ok      (Done)
                 │                                 error   (Error, or a send that failed)
                 └────────────────────────────────  timeout (nothing final within timeout_s)
    planned ── (the run is stopped first) ─────────── not_sent (never sent: no outcome to judge)

Once a request has its outcome it is frozen: later or repeated replies are counted in
`ignored` ("late", "duplicate", ...) and change nothing.

Retries (Lazy Pirate, ZeroMQ Guide, ch. 4) follow liveness, not age. A request is sent again
(same request id, avoiding `failed_nodes`, while it has retries left) only when the node or
link it waits on is known gone — an Error with a RETRYABLE code, a dropped connection
(`link_lost`), a death verdict of the coordinator or a gossip peer (`node_gone`), a peer
that lost the node it forwarded to (`Reassigned`) — or when its attempt was silent for
`attempt_timeout_s`: nodes send a `Progress` about once a second while they hold a
request, and every report of the serving node restarts that timer.

Exactly one server: the first node to report a token is the request's `serving` node. A
report from any other node while it serves is a late duplicate: it is ignored and the
sender cancels it (`cancels`), and an Error from another node (a retry's refusal) never
decides a request that is being served. Only the serving node can pass that role on: its
`Handover` (a live migration, daemons/node/migration.py) makes the destination the serving
node, whose reports then reach us through the source. The first final answer decides the outcome; answers
of the other attempts are then `late`. Times are seconds from the run's
start on the monotonic clock; latencies are taken from `scheduled_s`, never from the
actual send (no coordinated omission, wrk2 README; HdrHistogram recordValueWithExpectedInterval).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Protocol

from daemons.bus.envelope import Envelope
from daemons.core.messages import Done, Error, FirstToken, Handover, Placement, Progress, Reassigned, StreamToken
from daemons.loadgen.coordinators import CoordinatorSet
from daemons.loadgen.workload import PlannedRequest
from daemons.rundir.requests import ERROR, NOT_SENT, OK, SHED, TIMEOUT  # outcomes, as requests.csv spells them

OUTCOMES = (OK, ERROR, TIMEOUT, NOT_SENT)

IGNORED_KINDS = ("late", "duplicate", "unknown", "unexpected", "malformed", "stale")
# The node (or the peer that would forward) failed, not the request: another node may serve it.
RETRYABLE = frozenset({"backend_died", "backend_unreachable", "backend_timeout", "peer_dead",
                       "incomplete_generation"})
# The coordinator that answered (or placed it) is not the active one: ask the other.
REROUTE = frozenset({"not_active", "stale_epoch"})
REROUTE_BACKOFF_S = 0.25
REROUTE_BACKOFF_MAX_S = 1.0


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request. None means "did not happen"."""

    request_id: str
    model: str
    prompt_tokens: int
    max_new_tokens: int
    scheduled_s: float
    sent_s: float | None = None
    placed_s: float | None = None
    first_token_s: float | None = None
    done_s: float | None = None
    node: str = ""
    action: str = ""
    hops: int | None = None
    tokens: int | None = None
    finish_reason: str = ""
    status: str = ""  # "" while in flight, then ok | error | timeout | not_sent
    error: str = ""  # a stable code: the Error's code, timeout, send_failed, bad_placement, cancelled
    error_detail: str = ""
    est_wait_s: float | None = None
    decision_s: float | None = None
    server_timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 0  # sends of this request (1 + retries + reroutes)
    failed_nodes: list[str] = field(default_factory=list)  # nodes that failed an attempt
    serving: str = ""  # the node that reported its first token; others that report are cancelled
    serving_via: str = ""  # the endpoint its reports come through (itself, or a gossip entry peer)
    attempt_deadline: float = math.inf  # when the current attempt counts as lost
    coordinator: str = ""  # name of the coordinator that placed it (centralized)
    epoch: int = 0  # that coordinator's epoch
    retried: int = 0  # retries after a node failed it
    reroutes: int = 0  # schedule requests asked again of a(nother) coordinator
    asked: str = ""  # the coordinator endpoint the latest schedule request went to
    placed_via: str = ""  # the coordinator endpoint whose placement it follows
    placement_deadline: float = math.inf
    node_endpoint: str = ""  # where the current placement sent it
    placed_action: str = ""  # the latest placement's action; `action` ends as the node's (Done)
    decided_by: str = ""  # hybrid: which path placed it (Done.decided_by); "" in other arms
    klass: str = ""  # its workload class ("" without classes) and that class's SLOs (0: none)
    slo_ttft_ms: float = 0.0
    slo_tpot_ms: float = 0.0
    priority: int = 0
    migrated_from: str = ""  # its first live migration: source, destination, tokens at the switch, when
    migrated_to: str = ""
    migration_tokens: int | None = None
    migration_s: float | None = None
    handovers: int = 0  # Handovers heard (a failed migration's way back counts too)

    @property
    def ttft_s(self) -> float | None:
        """Time to first token, from the scheduled send time."""
        return None if self.first_token_s is None else self.first_token_s - self.scheduled_s

    @property
    def latency_s(self) -> float | None:
        """End-to-end latency of a completed request, from the scheduled send time."""
        return None if self.done_s is None else self.done_s - self.scheduled_s

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first, for a completed request of 2+ tokens (the
        report's TPOT, cli/report/summary.py, which counts 0 for a single token)."""
        latency, ttft, tokens = self.latency_s, self.ttft_s, self.tokens or 0
        if latency is None or ttft is None or tokens < 2:
            return None
        return (latency - ttft) / (tokens - 1)

    @property
    def send_lag_s(self) -> float | None:
        """How late the generator itself sent the request."""
        return None if self.sent_s is None else self.sent_s - self.scheduled_s


class RequestObserver(Protocol):
    """Told of each request's first send and its outcome (the load generator's metrics)."""

    def sent(self, rec: RequestRecord) -> None: ...
    def finished(self, rec: RequestRecord) -> None: ...


def new_record(req: PlannedRequest) -> RequestRecord:
    return RequestRecord(req.request_id, req.model, req.prompt_tokens, req.max_new_tokens, req.t_s,
                         klass=req.klass, slo_ttft_ms=req.slo_ttft_ms, slo_tpot_ms=req.slo_tpot_ms,
                         priority=req.priority)


class Recorder:
    """Applies sends, replies and the clock to the records; decides each outcome once."""

    def __init__(self, schedule: list[PlannedRequest], timeout_s: float, mode: str, retries: int = 0,
                 attempt_timeout_s: float = 0.0, coordinators: CoordinatorSet | None = None,
                 coordinator_timeout_s: float = 0.0, coordinator_retries: int = 0) -> None:
        self.records = [new_record(r) for r in schedule]
        self._by_id = {r.request_id: r for r in self.records}
        self._timeout_s = timeout_s
        self._mode = mode
        self._in_flight: deque[RequestRecord] = deque()  # in send order = deadline order
        self.ignored: Counter[str] = Counter({k: 0 for k in IGNORED_KINDS})
        self.outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.sent = 0
        self._sent_finished = 0
        self._retries = retries
        self._attempt_timeout_s = attempt_timeout_s
        self._attempt_heap: list[tuple[float, str]] = []  # (deadline, request id); stale ones skipped
        self.retry_due: list[RequestRecord] = []  # the sender sends these again, then clears it
        self.coordinators = coordinators
        self._coordinator_timeout_s = coordinator_timeout_s
        self._coordinator_retries = coordinator_retries
        self._placement_heap: list[tuple[float, str]] = []  # (deadline, request id); stale ones skipped
        self._delayed: list[tuple[float, str]] = []  # reroutes waiting out their back-off
        # (request id, node, endpoint it reports through): the sender sends each a Cancel, then clears it
        self.cancels: list[tuple[str, str, str]] = []
        self.observer: RequestObserver | None = None  # told of first sends and outcomes (metrics)

    @property
    def finished(self) -> int:
        return self.outcomes.total()

    @property
    def in_flight(self) -> int:
        return self.sent - self._sent_finished

    def next_expiry(self) -> float:
        """Scheduled time + timeout of the oldest request still in flight, or the next silent
        attempt (inf if none). Placement timers and back-offs are not here: they need no better
        than the sender's 0.1 s wake-ups, and waking for each of them would delay sends."""
        self._drop_finished_head()
        final = self._in_flight[0].scheduled_s + self._timeout_s if self._in_flight else math.inf
        return min(final, self._attempt_heap[0][0]) if self._attempt_heap else final

    def on_sent(self, rec: RequestRecord, now: float, to: str = "") -> None:
        rec.sent_s = now
        self.sent += 1
        self._in_flight.append(rec)
        rec.attempts = 1
        self._asked(rec, to, now)
        self._progress(rec, now)
        if self.observer is not None:
            self.observer.sent(rec)

    def on_resent(self, rec: RequestRecord, now: float, to: str = "") -> None:
        """Attempt number `attempts + 1` of `rec` has just been sent (to coordinator `to`, if any)."""
        rec.attempts += 1
        rec.placed_s, rec.node, rec.action, rec.node_endpoint = None, "", "", ""
        self._asked(rec, to, now)
        self._progress(rec, now)

    def _asked(self, rec: RequestRecord, to: str, now: float) -> None:
        """A schedule request went to coordinator `to`: start waiting for its placement."""
        rec.asked = to
        if to and self._coordinator_timeout_s > 0:
            rec.placement_deadline = now + self._coordinator_timeout_s
            heapq.heappush(self._placement_heap, (rec.placement_deadline, rec.request_id))

    def _progress(self, rec: RequestRecord, now: float) -> None:
        """The current attempt moved: its silence timer starts again."""
        if self._attempt_timeout_s > 0 and rec.retried < self._retries:
            rec.attempt_deadline = now + self._attempt_timeout_s
            heapq.heappush(self._attempt_heap, (rec.attempt_deadline, rec.request_id))

    def _retry(self, rec: RequestRecord, failed_node: str, cancel: bool = False) -> bool:
        """Queue `rec` for another attempt if it has one left; False when it has none. With
        `cancel`, the node serving it may be alive with no way left to tell us (the entry peer
        that relayed it is gone): it gets a Cancel, sent before the retry on the same path, so
        it never races the next attempt (it starts afresh if the retry lands on it)."""
        if rec.retried >= self._retries:
            return False
        rec.retried += 1
        if failed_node and failed_node not in rec.failed_nodes:
            rec.failed_nodes.append(failed_node)
        if rec.serving:
            if cancel:
                self.cancels.append((rec.request_id, rec.serving, rec.serving_via))
            rec.serving = rec.serving_via = ""  # the next attempt's first reporter serves it
        rec.attempt_deadline = math.inf
        rec.placement_deadline = math.inf
        self.retry_due.append(rec)
        return True

    def _reroute(self, rec: RequestRecord, now: float, backoff_s: float) -> bool:
        """Ask a coordinator again (after `backoff_s`); False once the reroutes are used up."""
        if rec.reroutes >= self._coordinator_retries:
            return False
        rec.reroutes += 1
        rec.attempt_deadline = rec.placement_deadline = math.inf
        rec.placed_s, rec.node, rec.action = None, "", ""
        if backoff_s > 0:
            heapq.heappush(self._delayed, (now + backoff_s, rec.request_id))
        else:
            self.retry_due.append(rec)
        return True

    def link_lost(self, endpoint: str, now: float) -> None:
        """The connection to `endpoint` dropped (its process died): requests waiting there are
        retried now, as if it had failed them (a coordinator: asked of the other one)."""
        if self.coordinators is not None and endpoint in self.coordinators.endpoints:
            self.coordinators.timed_out(endpoint, now)
        for rec in self._in_flight:
            if rec.status:
                continue
            if endpoint in (rec.node_endpoint, rec.serving_via):
                self._retry(rec, rec.node, cancel=True)
            elif rec.asked == endpoint and rec.placed_s is None:
                self._reroute(rec, now, 0.0)

    def node_gone(self, node: str, endpoint: str, now: float) -> None:
        """The coordinator or a gossip peer declared `node` (at `endpoint`) dead: every request
        waiting on it, served by it or entered through it, is retried now."""
        for rec in self._in_flight:
            if rec.status:
                continue
            placed_there = rec.placed_s is not None and rec.node == node
            if rec.serving == node or placed_there:
                self._retry(rec, node)
            elif endpoint and endpoint in (rec.node_endpoint, rec.serving_via):
                self._retry(rec, node, cancel=True)  # its entry peer is gone; whoever serves it may not be

    def check_placements(self, now: float) -> None:
        """Reroute every schedule request left unplaced too long; release reroutes whose back-off is over."""
        heap = self._placement_heap
        while heap and heap[0][0] <= now:
            deadline, rid = heapq.heappop(heap)
            rec = self._by_id[rid]
            if rec.status or deadline != rec.placement_deadline or rec.placed_s is not None:
                continue
            if self.coordinators is not None:
                self.coordinators.timed_out(rec.asked, now)
            self._reroute(rec, now, 0.0)
        while self._delayed and self._delayed[0][0] <= now:
            rec = self._by_id[heapq.heappop(self._delayed)[1]]
            if not rec.status:
                self.retry_due.append(rec)

    def check_attempts(self, now: float) -> None:
        """Queue for a retry every attempt silent past its deadline."""
        heap = self._attempt_heap
        while heap and heap[0][0] <= now:
            deadline, rid = heapq.heappop(heap)
            rec = self._by_id[rid]
            if not rec.status and deadline == rec.attempt_deadline:
                self._retry(rec, rec.node)

    def finish(self, rec: RequestRecord, status: str, now: float, code: str = "", detail: str = "") -> None:
        """Give `rec` its one outcome (callers check it has none yet)."""
        rec.status, rec.error, rec.error_detail = status, code, detail[:200]
        if status == OK:
            rec.done_s = now
        self.outcomes[status] += 1
        if rec.sent_s is not None:
            self._sent_finished += 1
        if self.observer is not None:
            self.observer.finished(rec)

    def on_reply(self, env: Envelope, now: float, source: str = "") -> tuple[RequestRecord, Placement] | None:
        """Apply one decoded reply that came from endpoint `source`; returns a placement the
        sender must act on, else None."""
        body = env.body
        if not isinstance(body, Placement | FirstToken | Progress | Done | Error | Reassigned | Handover
                          | StreamToken):
            self.ignored["unexpected"] += 1
            return None
        rec = self._by_id.get(body.request_id)
        if rec is None or rec.sent_s is None:
            self.ignored["unknown"] += 1
            return None
        if rec.status:
            self.ignored["late"] += 1
            return None
        if isinstance(body, Placement):
            return self._placement(rec, body, now, env.sender, source)
        if isinstance(body, Progress) and rec.placed_s is None and source and source == rec.asked:
            self._held(rec, now)  # the coordinator holds it in its admission queue
        elif isinstance(body, FirstToken | Progress):
            if self._owner(rec, body.node, source):
                self._reported(rec, body, now, source)
        elif isinstance(body, StreamToken):
            if self._owner(rec, body.node, source):
                self._progress(rec, now)
        elif isinstance(body, Handover):
            self._handover(rec, body, now)
        elif isinstance(body, Reassigned):
            self._reassigned(rec, body, now)
        elif isinstance(body, Done):
            self._done(rec, body, now)
        elif body.code == "cancelled" or (rec.serving and body.node != rec.serving):
            # The answer to our own Cancel, or the refusal of a retry (or duplicate) while
            # another node serves the request: never its outcome.
            self.ignored["late"] += 1
        elif body.code in REROUTE and self._mode == "centralized":
            self._refused(rec, body, now, source)
        elif not (body.code in RETRYABLE and self._retry(rec, body.node or rec.node)):
            rec.node = body.node or rec.node
            # `shed` (--admission slo) is an outcome of its own: refused on purpose, not a fault.
            self.finish(rec, SHED if body.code == SHED else ERROR, now, body.code or "error", body.message)
        return None

    def _refused(self, rec: RequestRecord, body: Error, now: float, source: str) -> None:
        """not_active from a coordinator, or stale_epoch from a node: ask the active coordinator."""
        by_node = body.code == "stale_epoch"
        if by_node and source != rec.node_endpoint:
            self.ignored["late"] += 1  # an older attempt's node: the current one decides
            return
        if self.coordinators is not None:
            self.coordinators.refused(rec.placed_via if by_node else source, now)
        backoff = min(REROUTE_BACKOFF_S * 2 ** rec.reroutes, REROUTE_BACKOFF_MAX_S)
        if not self._reroute(rec, now, 0.0 if by_node else backoff):
            rec.node = body.node or rec.node
            self.finish(rec, ERROR, now, body.code, body.message)

    def _placement(self, rec: RequestRecord, body: Placement, now: float, sender: str,
                   source: str) -> tuple[RequestRecord, Placement] | None:
        if self._mode != "centralized":
            self.ignored["unexpected"] += 1
            return None
        if rec.placed_s is not None or (rec.asked and source and source != rec.asked):
            self.ignored["duplicate"] += 1  # or an answer to an earlier ask we have given up on
            return None
        if self.coordinators is not None and not self.coordinators.placed(source, body.epoch):
            self.ignored["stale"] += 1
            self.coordinators.refused(source, now)
            if not self._reroute(rec, now, 0.0):
                self.finish(rec, ERROR, now, "stale_epoch", f"placed by a deposed coordinator (epoch {body.epoch})")
            return None
        rec.placement_deadline = math.inf
        rec.coordinator, rec.epoch, rec.placed_via, rec.node_endpoint = sender, body.epoch, source, body.endpoint
        rec.placed_s, rec.node, rec.action = now, body.node, body.action
        rec.placed_action = body.action
        rec.est_wait_s, rec.decision_s = body.est_wait_s, body.decision_s
        self._progress(rec, now)
        return rec, body

    def _owner(self, rec: RequestRecord, node: str, source: str) -> bool:
        """Whether a report from `node` is about the run that counts: True unless another node
        serves `rec`, in which case `node` holds a late duplicate and is cancelled."""
        if not node or not rec.serving or node == rec.serving:
            return True
        self.ignored["duplicate"] += 1
        self.cancels.append((rec.request_id, node, source))
        return False

    def _reported(self, rec: RequestRecord, body: FirstToken | Progress, now: float, source: str) -> None:
        """A token or a Progress from the node holding `rec`: it is alive, the silence timer restarts."""
        started = isinstance(body, FirstToken) or body.tokens > 0
        if started and not rec.serving and body.node:
            rec.serving, rec.serving_via = body.node, source
        if isinstance(body, FirstToken):
            if rec.first_token_s is not None:
                self.ignored["duplicate"] += 1
                return
            rec.first_token_s = now
            rec.node = body.node or rec.node
        self._progress(rec, now)

    def _handover(self, rec: RequestRecord, body: Handover, now: float) -> None:
        """The serving node moved `rec` to `body.to_node` (or took it back): its reports are
        the request's from now on. A Handover from any other node changes nothing."""
        if rec.serving and body.node != rec.serving:
            self.ignored["duplicate"] += 1
            return
        rec.serving = body.to_node
        rec.handovers += 1
        if not rec.migrated_to:
            rec.migrated_from, rec.migrated_to = body.node, body.to_node
            rec.migration_tokens, rec.migration_s = body.tokens, now
        self._progress(rec, now)

    def _held(self, rec: RequestRecord, now: float) -> None:
        """The coordinator asked says `rec` waits in its queue for capacity: it is alive and
        has it, so the wait for a placement (and the attempt's silence timer) starts again."""
        if self._coordinator_timeout_s > 0:
            rec.placement_deadline = now + self._coordinator_timeout_s
            heapq.heappush(self._placement_heap, (rec.placement_deadline, rec.request_id))
        self._progress(rec, now)

    def _reassigned(self, rec: RequestRecord, body: Reassigned, now: float) -> None:
        """A gossip peer lost the node it forwarded `rec` to and places it again: the next
        server's reports are this request's, not a duplicate's."""
        if body.node and body.node == rec.serving:
            rec.serving = rec.serving_via = ""
        if body.node and body.node not in rec.failed_nodes:
            rec.failed_nodes.append(body.node)
        self._progress(rec, now)

    def _done(self, rec: RequestRecord, body: Done, now: float) -> None:
        if rec.serving and body.node and body.node != rec.serving:
            # Another run finished first (e.g. a node's completed-cache answer): it decides, and
            # the one still running is stopped.
            self.cancels.append((rec.request_id, rec.serving, rec.serving_via))
        rec.node, rec.action, rec.hops = body.node or rec.node, body.action or rec.action, body.hops
        rec.tokens, rec.finish_reason = body.tokens, body.finish_reason
        rec.server_timings = dict(body.timings)
        rec.decided_by = body.decided_by
        if rec.first_token_s is None and body.tokens > 0:
            # No FirstToken seen (a node may skip it): the first token came no later than Done.
            rec.first_token_s = now
        self.finish(rec, OK, now)

    def expire(self, now: float) -> int:
        """Time out every request whose deadline has passed; returns how many."""
        expired = 0
        while self._in_flight:
            rec = self._in_flight[0]
            if rec.status:
                self._in_flight.popleft()
            elif rec.scheduled_s + self._timeout_s <= now:
                self._in_flight.popleft()
                detail = f"no {self._waiting_for(rec)} within {self._timeout_s:g} s"
                self.finish(rec, TIMEOUT, now, "timeout", detail)
                expired += 1
                if rec.serving or rec.node:  # nobody waits for it any more: free the node that holds it
                    self.cancels.append((rec.request_id, rec.serving or rec.node, rec.serving_via or rec.node_endpoint))
            else:
                break
        return expired

    def cancel(self, now: float, reason: str) -> None:
        """Stop early: a request sent and without an outcome gets error `cancelled`, one never
        sent is `not_sent` (nothing was asked of the system, so nothing failed)."""
        for rec in self.records:
            if not rec.status:
                if rec.sent_s is None:
                    self.finish(rec, NOT_SENT, now, "", "the run was stopped before its send time")
                else:
                    self.finish(rec, ERROR, now, "cancelled", reason)

    def _waiting_for(self, rec: RequestRecord) -> str:
        if self._mode == "centralized" and rec.placed_s is None:
            return "placement"
        return "first token" if rec.first_token_s is None else "done"

    def _drop_finished_head(self) -> None:
        while self._in_flight and self._in_flight[0].status:
            self._in_flight.popleft()
