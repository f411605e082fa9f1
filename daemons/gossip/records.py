"""Versioned node records: owner-only writes, ordered by (generation, version).

A record is the small piece of state a node shares with everyone through gossip
(e.g. ``{gpus, queue_depth, models, endpoint}``); its body is an opaque
msgpack-able map supplied by the owner. Rules (derived from SWIM and memberlist), and why:

- only the owner creates versions of its record, so there are never concurrent
  writers and "newest wins" is well defined;
- order is (generation, version): the generation is a boot nonce that grows across
  restarts, so a restarted node supersedes everything its previous life said even
  though its version counter starts again at 1;
- receivers never use wall-clock timestamps for ordering or liveness: clocks differ;
  a record's age is measured on the receiver's own clock since it arrived;
- owners coalesce changes and publish at most once per max(0.5 s, N/128 s), so
  record gossip stays within the per-message byte budget as N grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from daemons.gossip.messages import GossipDecodeError, record_body


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One version of one node's record."""

    node: str
    gen: int
    ver: int
    body: Mapping[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        """Ordering key: newer generation first, then newer version."""
        return (self.gen, self.ver)

    def newer_than(self, other: NodeRecord | None) -> bool:
        return other is None or self.key > other.key


def normalize_body(body: Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    """A private deep copy of `body` exactly as receivers will see it.

    Raises ValueError when the body is not msgpack-able with string keys or is too large,
    so the owner learns at once, not after a peer has dropped the frame.
    """
    if not isinstance(body, Mapping):
        raise ValueError("record body must be a mapping")
    try:
        packed = msgpack.packb(dict(body), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"record body is not msgpack-able: {exc}") from None
    if len(packed) > max_bytes:
        raise ValueError(f"record body is {len(packed)} bytes, limit {max_bytes}")
    copy = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    try:
        return record_body(copy)
    except GossipDecodeError as exc:
        raise ValueError(f"record body rejected: {exc}") from None


class RecordPublisher:
    """The owner's side: stages body changes and turns them into versions at a bounded rate."""

    __slots__ = ("_current", "_floor", "_last_publish", "_pending", "gen", "node")

    def __init__(self, node: str, gen: int) -> None:
        self.node = node
        self.gen = gen
        self._current: NodeRecord | None = None
        self._pending: dict[str, Any] | None = None
        self._last_publish = float("-inf")
        self._floor = 0  # versions up to here were claimed by someone else: publish above

    @property
    def current(self) -> NodeRecord | None:
        """The latest published version, if any."""
        return self._current

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def stage(self, body: dict[str, Any]) -> None:
        """Remember `body` (already normalized) as the next version to publish."""
        if self._current is not None and body == self._current.body:
            self._pending = None  # a change and its undo coalesce into nothing
            return
        self._pending = body

    def due_at(self, interval: float) -> float | None:
        """When the staged body may be published (None when nothing is staged)."""
        if self._pending is None:
            return None
        return self._last_publish + interval

    def raise_floor(self, ver: int) -> None:
        self._floor = max(self._floor, ver)

    def force_due(self) -> None:
        """Let the staged body be published at once (a new life republishes its record)."""
        self._last_publish = float("-inf")

    def republish_above(self, now: float, ver: int) -> NodeRecord:
        """The current body again at version `ver` + 1: the owner's refutation of a version
        it never made (only the owner writes its record)."""
        assert self._current is not None
        body = self._pending if self._pending is not None else self._current.body
        self._current = NodeRecord(self.node, self.gen, ver + 1, body)
        self._pending = None
        self._last_publish = now
        return self._current

    def publish(self, now: float, interval: float) -> NodeRecord | None:
        """Turn the staged body into a new version if the rate limit allows."""
        if self._pending is None or now < self._last_publish + interval:
            return None
        ver = max(0 if self._current is None else self._current.ver, self._floor) + 1
        self._current = NodeRecord(self.node, self.gen, ver, self._pending)
        self._pending = None
        self._last_publish = now
        return self._current


__all__ = ["NodeRecord", "RecordPublisher", "normalize_body"]
