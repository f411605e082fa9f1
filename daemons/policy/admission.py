"""Admission queue: requests no node can take now wait here, bounded, until capacity frees.

Sans-IO: a plain state machine. No sockets, no clocks (every call takes `now`), no policy:
the caller (the coordinator, a gossip peer) asks its placement policy and tells the queue
what happened. So the coordinator and every gossip peer hold requests by the same rules.

Rules:
- one lane per model, first come first served within a lane: only a lane's head is
  offered to the policy again (`heads`), so a later request never overtakes an earlier
  one of the same model;
- a lane holds at most `limit` requests: one more is refused with `overloaded` at once;
- every entry carries its deadline; `expire(now)` takes out the ones past it, each with a
  `queue_timeout` outcome. Nothing leaves the queue without an outcome: it is placed
  (`remove`), expires, or is refused on arrival.
- an entry offered again under the same request id (a client asking again: a reroute, a
  retry) keeps its place and deadline and takes the newer item (where to answer, what
  to exclude).

Priority classes: lanes are keyed by `(model, priority)` through `lane_key` (first come
first served within a class), and `heads` orders lane heads by `rank`: priority with aging,
the rule of `priority.py` (higher classes first, and a waiting request gains one level per
`aging_s`, so a low class is never starved). With `by_priority` off (`--no-priority`) every
request of a model shares one lane and heads go in arrival order, as before classes.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from daemons.core.errors import ConfigError
from daemons.policy.priority import DEFAULT_AGING_S, check_aging, virtual_arrival

T = TypeVar("T")

OVERLOADED = "overloaded"
QUEUE_TIMEOUT = "queue_timeout"
DEFAULT_LIMIT = 64  # per model: at 10 req/s of one model, several seconds of arrivals
DEFAULT_TIMEOUT_S = 120.0  # the load generator's default per-request timeout


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """How much may wait and for how long: `[coordinator]` / `[node]` queue_limit, queue_timeout_s."""

    limit: int = DEFAULT_LIMIT
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        check_limits(self.limit, self.timeout_s)


def check_limits(limit: object, timeout_s: object, where: str = "") -> None:
    """One clear ConfigError for a queue limit or timeout that cannot work."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"{where}queue_limit must be a whole number >= 1 (requests waiting per model), "
                          f"got {limit!r}: set queue_limit = {DEFAULT_LIMIT} or another positive count")
    if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or not timeout_s > 0:
        raise ConfigError(f"{where}queue_timeout_s must be a number of seconds > 0, got {timeout_s!r}: "
                          f"set it to the request timeout (e.g. {DEFAULT_TIMEOUT_S:g})")


@dataclass(slots=True)
class Waiting(Generic[T]):
    """One held request: what the caller needs to place or answer it, and when it must leave."""

    request_id: str
    model: str
    item: T
    arrived: float
    deadline: float
    priority: int = 0
    seq: int = 0  # arrival order across lanes (ties of `arrived`)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """Why a request left the queue without a placement: code `overloaded` or `queue_timeout`."""

    entry: Waiting[T]
    code: str
    message: str


def lane_key(model: str, priority: int, by_priority: bool = True) -> tuple[str, int]:
    """The lane a request waits in: one per model and class (one per model without priorities)."""
    return (model, priority if by_priority else 0)


def rank(entry: Waiting[T], aging_s: float = DEFAULT_AGING_S) -> tuple[float, int]:
    """Order in which lane heads are offered: smallest virtual arrival (priority.py), then arrival."""
    return (virtual_arrival(entry.arrived, entry.priority, aging_s) if aging_s else 0.0, entry.seq)


@dataclass
class AdmissionQueue(Generic[T]):
    limits: QueueLimits = field(default_factory=QueueLimits)
    by_priority: bool = True  # False: one lane per model, arrival order (--no-priority)
    aging_s: float = DEFAULT_AGING_S  # seconds of waiting worth one priority level (priority.py)
    _lanes: dict[tuple[str, int], deque[Waiting[T]]] = field(default_factory=dict)
    _by_id: dict[str, Waiting[T]] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    # Counters for status and logs: requests ever queued, placed from the queue, refused, expired.
    queued: int = 0
    placed: int = 0
    refused: int = 0
    expired: int = 0

    def __post_init__(self) -> None:
        check_aging(self.aging_s, "[queue] ")

    def __len__(self) -> int:
        return len(self._by_id)

    def _lane(self, model: str, priority: int) -> tuple[str, int]:
        return lane_key(model, priority, self.by_priority)

    def _rank(self, entry: Waiting[T]) -> tuple[float, int]:
        return rank(entry, self.aging_s if self.by_priority else 0.0)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def waiting(self) -> list[Waiting[T]]:
        """Every held request, in no particular order."""
        return list(self._by_id.values())

    def lengths(self) -> dict[str, int]:
        """Requests waiting per model."""
        out: dict[str, int] = {}
        for (model, _), lane in self._lanes.items():
            out[model] = out.get(model, 0) + len(lane)
        return out

    def offer(self, request_id: str, model: str, item: T, now: float, timeout_s: float = 0.0,
              priority: int = 0) -> Outcome[T] | None:
        """Hold a request; None if it waits now, an `overloaded` Outcome if its lane is full.

        `timeout_s` > 0 is the request's own deadline from now, capped by the queue's;
        0 means the queue's `timeout_s`.
        """
        known = self._by_id.get(request_id)
        if known is not None:  # asked again: same place, same deadline, the newer item
            known.item = item
            return None
        limit_s = self.limits.timeout_s
        wait_s = min(timeout_s, limit_s) if timeout_s > 0 else limit_s
        entry = Waiting(request_id, model, item, now, now + wait_s, priority, next(self._seq))
        lane = self._lanes.setdefault(self._lane(model, priority), deque())
        if len(lane) >= self.limits.limit:
            self.refused += 1
            return Outcome(entry, OVERLOADED,
                           f"{len(lane)} requests for {model} already wait for capacity (queue_limit "
                           f"{self.limits.limit}): lower the load, add nodes or raise queue_limit")
        lane.append(entry)
        self._by_id[request_id] = entry
        self.queued += 1
        return None

    def heads(self) -> list[Waiting[T]]:
        """The first request of every lane, in the order they should be offered to the policy."""
        return sorted((lane[0] for lane in self._lanes.values() if lane), key=self._rank)

    def waits_ahead(self, model: str, priority: int) -> bool:
        """Whether a request of `model` and `priority` arriving now would wait behind others:
        some of its model wait in its lane or a higher class's (it never overtakes those)."""
        return any(lane and m == model and p >= priority for (m, p), lane in self._lanes.items()) \
            if self.by_priority else self.head(model) is not None

    def head(self, model: str, priority: int = 0) -> Waiting[T] | None:
        """The first request waiting in the lane of `model` (and `priority`), if any."""
        lane = self._lanes.get(self._lane(model, priority))
        return lane[0] if lane else None

    def is_head(self, request_id: str) -> bool:
        entry = self._by_id.get(request_id)
        if entry is None:
            return False
        lane = self._lanes[self._lane(entry.model, entry.priority)]
        return lane[0] is entry

    def get(self, request_id: str) -> Waiting[T] | None:
        return self._by_id.get(request_id)

    def remove(self, request_id: str, placed: bool = True) -> Waiting[T] | None:
        """Take a request out (it was placed, or its asker went away); None if it was not here."""
        entry = self._by_id.pop(request_id, None)
        if entry is None:
            return None
        key = self._lane(entry.model, entry.priority)
        lane = self._lanes[key]
        lane.remove(entry)  # almost always the head: O(1) there
        if not lane:
            del self._lanes[key]
        if placed:
            self.placed += 1
        return entry

    def release_all(self) -> list[Waiting[T]]:
        """Take out every waiting request, unplaced, lane heads first as the policy would have
        been offered them: a coordinator deposed while holding them hands them back to their
        askers (server.py and the simulated coordinator answer each `not_active`)."""
        out = []
        for head in self.heads():
            while (entry := self.head(head.model, head.priority)) is not None:
                self.remove(entry.request_id, placed=False)
                out.append(entry)
        return out

    def expire(self, now: float) -> list[Outcome[T]]:
        """Take out every request whose deadline has passed, each with a `queue_timeout` outcome."""
        late = [e for e in self._by_id.values() if e.deadline <= now]
        out = []
        for entry in sorted(late, key=lambda e: e.seq):
            self.remove(entry.request_id, placed=False)
            self.expired += 1
            out.append(_timed_out(entry, now))
        return out

    def expire_one(self, request_id: str, now: float) -> Outcome[T] | None:
        """`expire` for one request (a caller that waits per request): its outcome if it is late."""
        entry = self._by_id.get(request_id)
        if entry is None or entry.deadline > now:
            return None
        self.remove(request_id, placed=False)
        self.expired += 1
        return _timed_out(entry, now)

    def next_deadline(self) -> float | None:
        """The earliest deadline of any waiting request (None when empty)."""
        return min((e.deadline for e in self._by_id.values()), default=None)

    def status(self) -> dict[str, object]:
        """For StatusReply.info: what waits now, and the counters."""
        return {"queued": len(self), "queue_by_model": self.lengths(), "queue_limit": self.limits.limit,
                "queue_timeout_s": self.limits.timeout_s, "queued_total": self.queued,
                "placed_from_queue": self.placed, "overloaded": self.refused, "queue_timeouts": self.expired}


def _timed_out(entry: Waiting[T], now: float) -> Outcome[T]:
    return Outcome(entry, QUEUE_TIMEOUT,
                   f"waited {now - entry.arrived:.1f} s for capacity for {entry.model} and no node freed "
                   "enough memory: lower the load, add nodes or raise queue_timeout_s")
