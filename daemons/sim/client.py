"""The simulated load generator: the real one's `Recorder` fed on the virtual clock.

Every outcome rule (placements, first tokens, retries on a lost node, silence timers,
timeouts, exactly one outcome per request) is the load generator's own state machine,
daemons/loadgen/recorder.py, which takes decoded replies and the time: here the replies
are the same message dataclasses, wrapped in an `Envelope` as the wire would deliver them.
What this module adds is the sender's side: each request leaves at its scheduled time
(open loop), centralized requests ask the coordinator the real one's `CoordinatorSet` follows (with a
standby: the active one) and then go to the node it names,
gossip requests enter a peer chosen from the request id (as the sender's `_entry_from`),
and the requests the recorder queues for a retry are sent again. Like the sender it asks
the cluster once a second which nodes are gone (`node_gone`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from daemons.bus.envelope import Envelope
from daemons.core.messages import Placement
from daemons.loadgen.recorder import Recorder, RequestRecord
from daemons.loadgen.workload import PlannedRequest
from daemons.policy import PlacementRequest
from daemons.sim.clock import Clock

LOADGEN = "loadgen"
TICK_S = 0.1  # the sender's timer checks (attempts, placements, timeouts)
MEMBERS_EVERY_S = 1.0  # how often it asks who is gone


class SimClient:
    """`send(rec, to)` sends one attempt of `rec` (`to`: an entry peer, or the coordinator to ask)."""

    def __init__(self, clock: Clock, recorder: Recorder, schedule: list[PlannedRequest], mode: str,
                 entries: list[str], send: Callable[[RequestRecord, str], None],
                 forward: Callable[[RequestRecord, Placement], None],
                 gone: Callable[[], list[tuple[str, str]]]) -> None:
        self.clock, self.rec, self.schedule, self.mode = clock, recorder, schedule, mode
        self.entries = entries
        self._send, self._forward, self._gone_now = send, forward, gone
        self._by_id = {r.request_id: r for r in recorder.records}
        self._down: set[str] = set()  # entry peers whose link dropped
        self._gone: set[str] = set()
        self._next = 0

    def start(self) -> None:
        self._arrive_next()
        self.clock.after(TICK_S, self._tick)
        self.clock.after(MEMBERS_EVERY_S, self._members)

    @property
    def done(self) -> bool:
        return self._next >= len(self.schedule) and self.rec.finished == len(self.rec.records)

    # ----- sending -----------------------------------------------------------------------------
    def _arrive_next(self) -> None:
        """One arrival at a time on the heap: a long schedule never fills it."""
        if self._next >= len(self.schedule):
            return
        planned = self.schedule[self._next]
        self.clock.at(planned.t_s, lambda: self._arrive(planned))

    def _arrive(self, planned: PlannedRequest) -> None:
        self._next += 1
        rec = self._by_id[planned.request_id]
        to = self._entry(rec, 0)
        self.rec.on_sent(rec, self.clock.now, "" if self.mode == "gossip" else to)
        if self.mode == "gossip":
            rec.node_endpoint = to
        self._send(rec, to)
        self._arrive_next()

    def _entry(self, rec: RequestRecord, offset: int) -> str:
        """The entry peer of a request: by its id, skipping peers whose link dropped (sender.py);
        centralized, the coordinator it follows now (coordinators.py)."""
        if self.mode != "gossip":
            return self.rec.coordinators.active if self.rec.coordinators is not None else "coordinator"
        start = zlib.crc32(rec.request_id.encode()) + offset
        order = [self.entries[(start + k) % len(self.entries)] for k in range(len(self.entries))]
        return next((e for e in order if e not in self._down), order[0])

    def _resend_due(self) -> None:
        self.rec.cancels.clear()  # a late duplicate runs on: the simulated nodes are not told
        if not self.rec.retry_due:
            return
        due, self.rec.retry_due = self.rec.retry_due, []
        now = self.clock.now
        for rec in due:
            if rec.status:
                continue
            to = self._entry(rec, rec.attempts)
            self.rec.on_resent(rec, now, "" if self.mode == "gossip" else to)
            if self.mode == "gossip":
                rec.node_endpoint = to
            self._send(rec, to)

    # ----- replies -----------------------------------------------------------------------------
    def reply(self, body: Any, sender: str, source: str) -> None:
        """A reply from `sender` arrived through `source` (the endpoint it came by)."""
        env = Envelope(body.TYPE, sender, body.request_id, body)
        placed = self.rec.on_reply(env, self.clock.now, source)
        if placed is not None:
            self._forward(*placed)
        self._resend_due()

    def link_lost(self, endpoint: str) -> None:
        self._down.add(endpoint)
        self.rec.link_lost(endpoint, self.clock.now)
        self._resend_due()

    def link_back(self, endpoint: str) -> None:
        self._down.discard(endpoint)

    # ----- timers ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = self.clock.now
        self.rec.check_attempts(now)
        self.rec.check_placements(now)
        self.rec.expire(now)
        self._resend_due()
        if not self.done:
            self.clock.after(TICK_S, self._tick)

    def _members(self) -> None:
        now = self.clock.now
        gone = self._gone_now()
        names = {node for node, _ in gone}
        for node, endpoint in gone:
            if node not in self._gone:
                self._gone.add(node)
                self.rec.node_gone(node, endpoint, now)
        self._gone &= names  # alive again: may go again
        self._resend_due()
        if not self.done:
            self.clock.after(MEMBERS_EVERY_S, self._members)

    def placement_request(self, rec: RequestRecord) -> PlacementRequest:
        return PlacementRequest(rec.model, rec.prompt_tokens, rec.max_new_tokens, rec.priority,
                                frozenset(rec.failed_nodes), rec.slo_ttft_ms / 1000.0)
