"""Gossip wire messages: typed dataclasses, msgpack encoding and a hardened decoder.

Every frame is one msgpack array (derived from SWIM and memberlist)::

    [1, type, sender, incarnation, seq, body, piggyback[]]

- ``1`` is the protocol version; ``type`` a `MsgType`; ``sender`` the sender's node id;
  ``incarnation`` the sender's own incarnation; ``seq`` the probe sequence number
  (PING, ACK, PING_REQ, NACK; 0 otherwise);
- ``body`` a type-specific array (compact: no map keys on the wire);
- ``piggyback`` a list of ``[type, body]`` gossip items (ALIVE, SUSPECT, DEAD, STATE)
  riding along on any message. A pure gossip frame uses its first item as the body.

Decoding trusts nothing: the frame size is checked before unpacking, msgpack runs
with ``raw=False, strict_map_key=True`` and a bounded buffer, no extension types,
and every field is type- and range-checked (``bool`` is not an ``int`` here). Any
defect raises exactly one exception type, `GossipDecodeError`, whose ``cause`` is a
short stable label so a transport can log each cause once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple, TypeAlias

import msgpack

from daemons.gossip.config import MAX_FRAME_BYTES

PROTOCOL_VERSION = 1
MAX_ID_LEN = 128
MAX_ADDR_LEN = 256
MAX_ITEMS = 1024  # piggyback items or sync entries in one frame
MAX_BODY_DEPTH = 8
_U63 = (1 << 63) - 1
# Wire ranges (derived from SWIM and memberlist). An incarnation grows by one per refutation and a record
# version by one per publication (at most 2/s): 2^32 lasts 68 years at the fastest rate.
# A generation is the boot time in ms, a sequence number a counter: int63 for both.
MAX_INCARNATION = (1 << 32) - 1
MAX_VERSION = (1 << 32) - 1
MAX_GENERATION = _U63


class GossipDecodeError(ValueError):
    """A frame that is not a valid gossip message. ``cause`` is a short stable label."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


class MsgType(IntEnum):
    PING = 1
    ACK = 2
    PING_REQ = 3
    NACK = 4
    ALIVE = 5
    SUSPECT = 6
    DEAD = 7
    STATE = 8
    SYNC_REQ = 9
    SYNC_RESP = 10


class Status(IntEnum):
    """Liveness of a member. The value is its rank: at equal incarnation a higher rank wins."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


# ------------------------------------------------------------------------- bodies
@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe; `target` lets a reused address refuse a probe meant for someone else."""

    target: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to a PING with the same seq (directly, or relayed for a PING_REQ)."""


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to probe `target` at `addr` on our behalf (indirect probe)."""

    target: str
    addr: str


@dataclass(frozen=True, slots=True)
class Nack:
    """A relay's 'the target did not answer me either' (Lifeguard)."""


@dataclass(frozen=True, slots=True)
class Alive:
    """`node` is alive at (gen, inc), reachable at `addr`."""

    node: str
    addr: str
    gen: int
    inc: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """`origin` suspects `node` at (gen, inc)."""

    node: str
    gen: int
    inc: int
    origin: str


@dataclass(frozen=True, slots=True)
class Dead:
    """`origin` declares `node` dead at (gen, inc); origin == node means a graceful leave."""

    node: str
    gen: int
    inc: int
    origin: str


@dataclass(frozen=True, slots=True)
class State:
    """Version `ver` of `node`'s record in generation `gen`; only the owner creates these."""

    node: str
    gen: int
    ver: int
    body: dict[str, Any]
    # Its encoded size, measured once (item_size): every member that relays a version
    # queues it for gossip, and in the simulator (daemons/gossip/simnet.py) they all relay
    # this one object, so packing the body again for each relay cost a tenth of the run.
    size: int = field(default=-1, init=False, compare=False, repr=False)


class DigestEntry(NamedTuple):
    """What a member knows about one node, without the record body (push/pull)."""

    node: str
    gen: int
    inc: int
    status: Status
    ver: int  # record version in `gen`, -1 = none


class SyncEntry(NamedTuple):
    """Everything known about one node, sent when the other side's digest is older."""

    node: str
    addr: str
    gen: int
    inc: int
    status: Status
    ver: int
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SyncReq:
    """Anti-entropy request: our digest. `join` asks for everything (first contact)."""

    join: bool
    digest: tuple[DigestEntry, ...]


@dataclass(frozen=True, slots=True)
class SyncResp:
    """Entries newer than the requester's digest; with `push_back`, our digest for the return leg."""

    push_back: bool
    digest: tuple[DigestEntry, ...]
    entries: tuple[SyncEntry, ...]


GossipItem: TypeAlias = Alive | Suspect | Dead | State
Body: TypeAlias = Ping | Ack | PingReq | Nack | Alive | Suspect | Dead | State | SyncReq | SyncResp

_TYPE_OF: dict[type, MsgType] = {
    Ping: MsgType.PING, Ack: MsgType.ACK, PingReq: MsgType.PING_REQ, Nack: MsgType.NACK,
    Alive: MsgType.ALIVE, Suspect: MsgType.SUSPECT, Dead: MsgType.DEAD, State: MsgType.STATE,
    SyncReq: MsgType.SYNC_REQ, SyncResp: MsgType.SYNC_RESP,
}
GOSSIP_TYPES = frozenset({MsgType.ALIVE, MsgType.SUSPECT, MsgType.DEAD, MsgType.STATE})


@dataclass(frozen=True, slots=True)
class Message:
    """One gossip frame."""

    sender: str
    incarnation: int
    seq: int
    body: Body
    piggyback: tuple[GossipItem, ...] = ()

    @property
    def type(self) -> MsgType:
        return _TYPE_OF[type(self.body)]


# ------------------------------------------------------------------------- encode
def _digest_wire(d: tuple[DigestEntry, ...]) -> list[list[Any]]:
    return [[e.node, e.gen, e.inc, int(e.status), e.ver] for e in d]


def body_wire(body: Body) -> list[Any]:
    """The msgpack array for one body."""
    if isinstance(body, Ping):
        return [body.target]
    if isinstance(body, Ack | Nack):
        return []
    if isinstance(body, PingReq):
        return [body.target, body.addr]
    if isinstance(body, Alive):
        return [body.node, body.addr, body.gen, body.inc]
    if isinstance(body, Suspect | Dead):
        return [body.node, body.gen, body.inc, body.origin]
    if isinstance(body, State):
        return [body.node, body.gen, body.ver, body.body]
    if isinstance(body, SyncReq):
        return [body.join, _digest_wire(body.digest)]
    return [
        body.push_back, _digest_wire(body.digest),
        [[e.node, e.addr, e.gen, e.inc, int(e.status), e.ver, e.body] for e in body.entries],
    ]


def item_wire(item: GossipItem) -> list[Any]:
    """The ``[type, body]`` array of one piggyback item."""
    return [int(_TYPE_OF[type(item)]), body_wire(item)]


def item_size(item: GossipItem) -> int:
    """Encoded size of one piggyback item, for the broadcast byte budget (a State's is
    remembered on it: its body is never changed once made)."""
    if isinstance(item, State):
        if item.size < 0:
            object.__setattr__(item, "size", len(msgpack.packb(item_wire(item), use_bin_type=True)))
        return item.size
    return len(msgpack.packb(item_wire(item), use_bin_type=True))


def entry_size(entry: SyncEntry) -> int:
    """Encoded size of one sync entry, to split large sync responses."""
    return len(msgpack.packb([entry.node, entry.addr, entry.gen, entry.inc, 0, entry.ver, entry.body]))


def encode(msg: Message) -> bytes:
    """Serialize `msg` to one frame."""
    frame = [
        PROTOCOL_VERSION, int(msg.type), msg.sender, msg.incarnation, msg.seq,
        body_wire(msg.body), [item_wire(i) for i in msg.piggyback],
    ]
    return bytes(msgpack.packb(frame, use_bin_type=True))


# ------------------------------------------------------------------------- decode
def _reject_ext(code: int, data: bytes) -> Any:
    raise GossipDecodeError("ext", f"extension type {code} not allowed")


def decode(frame: bytes) -> Message:
    """Parse and validate one frame; raise `GossipDecodeError` on any defect."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise GossipDecodeError("frame-type", type(frame).__name__)
    if len(frame) > MAX_FRAME_BYTES:
        raise GossipDecodeError("oversize", f"{len(frame)} bytes")
    if len(frame) == 0:
        raise GossipDecodeError("empty")
    # `unpackb` has no max_buffer_size; an Unpacker bounds the buffer and, through it,
    # every string, array and map length.
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=True, max_buffer_size=MAX_FRAME_BYTES, use_list=True,
        ext_hook=_reject_ext,
    )
    try:
        unpacker.feed(frame)
        raw = unpacker.unpack()
        trailing = unpacker.tell() != len(frame)
    except GossipDecodeError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, StackError, UnicodeDecodeError, ...)
        raise GossipDecodeError("msgpack", type(exc).__name__) from None
    if trailing:
        raise GossipDecodeError("trailing", "bytes after the message")
    return _message(raw)


def _message(raw: Any) -> Message:
    if not isinstance(raw, list) or len(raw) != 7:
        raise GossipDecodeError("shape", "frame is not a 7-element array")
    version, mtype, sender, inc, seq, body, piggyback = raw
    if _is_int(version) and version != PROTOCOL_VERSION:
        raise GossipDecodeError("version", repr(version))
    _int(version, "version")
    t = _msg_type(mtype)
    items = _list(piggyback, "piggyback", MAX_ITEMS)
    return Message(
        sender=_node_id(sender, "sender"),
        incarnation=_inc(inc, "incarnation"),
        seq=_int(seq, "seq"),
        body=_body(t, body),
        piggyback=tuple(_item(i) for i in items),
    )


def _msg_type(value: Any) -> MsgType:
    if not _is_int(value):
        raise GossipDecodeError("type", repr(value)[:32])
    try:
        return MsgType(value)
    except ValueError:
        raise GossipDecodeError("type", repr(value)) from None


def _item(raw: Any) -> GossipItem:
    pair = _list(raw, "item", 2)
    if len(pair) != 2:
        raise GossipDecodeError("item", "not a [type, body] pair")
    t = _msg_type(pair[0])
    if t not in GOSSIP_TYPES:
        raise GossipDecodeError("item", f"{t.name} cannot be piggybacked")
    body = _body(t, pair[1])
    assert isinstance(body, Alive | Suspect | Dead | State)
    return body


def _body(t: MsgType, raw: Any) -> Body:
    f = _fields(raw, t, _ARITY[t])
    if t is MsgType.PING:
        return Ping(_node_id(f[0], "target"))
    if t is MsgType.ACK:
        return Ack()
    if t is MsgType.NACK:
        return Nack()
    if t is MsgType.PING_REQ:
        return PingReq(_node_id(f[0], "target"), _addr(f[1]))
    if t is MsgType.ALIVE:
        return Alive(_node_id(f[0], "node"), _addr(f[1]), _int(f[2], "gen"), _inc(f[3]))
    if t is MsgType.SUSPECT:
        return Suspect(_node_id(f[0], "node"), _int(f[1], "gen"), _inc(f[2]), _node_id(f[3], "origin"))
    if t is MsgType.DEAD:
        return Dead(_node_id(f[0], "node"), _int(f[1], "gen"), _inc(f[2]), _node_id(f[3], "origin"))
    if t is MsgType.STATE:
        return State(_node_id(f[0], "node"), _int(f[1], "gen"), _record_ver(f[2]), record_body(f[3]))
    if t is MsgType.SYNC_REQ:
        return SyncReq(_bool(f[0], "join"), _digest(f[1]))
    entries = tuple(_sync_entry(e) for e in _list(f[2], "entries", MAX_ITEMS * 4))
    return SyncResp(_bool(f[0], "push_back"), _digest(f[1]), entries)


_ARITY = {
    MsgType.PING: 1, MsgType.ACK: 0, MsgType.PING_REQ: 2, MsgType.NACK: 0, MsgType.ALIVE: 4,
    MsgType.SUSPECT: 4, MsgType.DEAD: 4, MsgType.STATE: 4, MsgType.SYNC_REQ: 2, MsgType.SYNC_RESP: 3,
}


def _fields(raw: Any, t: MsgType, arity: int) -> list[Any]:
    if not isinstance(raw, list) or len(raw) != arity:
        raise GossipDecodeError("body", f"{t.name} body must be an array of {arity}")
    return raw


def _digest(raw: Any) -> tuple[DigestEntry, ...]:
    out = []
    for e in _list(raw, "digest", MAX_ITEMS * 4):
        f = _list(e, "digest-entry", 5)
        if len(f) != 5:
            raise GossipDecodeError("digest-entry", "must have 5 fields")
        out.append(DigestEntry(
            _node_id(f[0], "node"), _int(f[1], "gen"), _inc(f[2]), _status(f[3]), _ver(f[4]),
        ))
    return tuple(out)


def _sync_entry(raw: Any) -> SyncEntry:
    f = _list(raw, "sync-entry", 7)
    if len(f) != 7:
        raise GossipDecodeError("sync-entry", "must have 7 fields")
    body = None if f[6] is None else record_body(f[6])
    return SyncEntry(
        _node_id(f[0], "node"), _addr(f[1]), _int(f[2], "gen"), _inc(f[3]), _status(f[4]),
        _ver(f[5]), body,
    )


# ------------------------------------------------------------------------- field checks
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(v: Any, what: str) -> int:
    if not _is_int(v) or not 0 <= v <= _U63:
        raise GossipDecodeError(f"field:{what}", "must be an integer in [0, 2^63)")
    return int(v)


def _inc(v: Any, what: str = "inc") -> int:
    if not _is_int(v) or not 0 <= v <= MAX_INCARNATION:
        raise GossipDecodeError(f"field:{what}", "must be an integer in [0, 2^32)")
    return int(v)


def _record_ver(v: Any) -> int:
    if not _is_int(v) or not 1 <= v <= MAX_VERSION:
        raise GossipDecodeError("field:ver", "must be an integer in [1, 2^32)")
    return int(v)


def _ver(v: Any) -> int:
    if not _is_int(v) or not -1 <= v <= MAX_VERSION:
        raise GossipDecodeError("field:ver", "must be an integer in [-1, 2^32)")
    return int(v)


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise GossipDecodeError(f"field:{what}", "must be a boolean")
    return v


def _status(v: Any) -> Status:
    if not _is_int(v) or v not in Status._value2member_map_:
        raise GossipDecodeError("field:status", repr(v)[:32])
    return Status(v)


def _text(v: Any, what: str, max_len: int) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= max_len or not v.isprintable():
        raise GossipDecodeError(f"field:{what}", f"must be a printable string of 1..{max_len} chars")
    return v


def _node_id(v: Any, what: str) -> str:
    return _text(v, what, MAX_ID_LEN)


def _addr(v: Any) -> str:
    return _text(v, "addr", MAX_ADDR_LEN)


def _list(v: Any, what: str, max_len: int) -> list[Any]:
    if not isinstance(v, list) or len(v) > max_len:
        raise GossipDecodeError(what, f"must be an array of at most {max_len}")
    return v


def record_body(v: Any) -> dict[str, Any]:
    """Check an opaque record body: a map with str keys of plain msgpack values, bounded depth."""
    if not isinstance(v, dict):
        raise GossipDecodeError("record", "body must be a map")
    _check_value(v, 0)
    return v


# The exact types msgpack decodes scalars to: always allowed, so a container's members of
# these types are passed over without a call each (a node's record holds hundreds, checked on
# every publish and every frame that carries one).
_PLAIN = frozenset({type(None), bool, int, str, bytes})


def _check_value(v: Any, depth: int) -> None:
    if depth > MAX_BODY_DEPTH:
        raise GossipDecodeError("record", "nested too deep")
    if v is None or isinstance(v, bool | int | str | bytes):
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise GossipDecodeError("record", "non-finite float")
        return
    deeper = depth + 1
    plain = _PLAIN if deeper <= MAX_BODY_DEPTH else frozenset()  # at the limit, any member is too deep
    if isinstance(v, list):
        for x in v:
            if type(x) not in plain:
                _check_value(x, deeper)
        return
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise GossipDecodeError("record", "map keys must be strings")
            if type(x) not in plain:
                _check_value(x, deeper)
        return
    raise GossipDecodeError("record", f"value of type {type(v).__name__} not allowed")


__all__ = [
    "GOSSIP_TYPES", "MAX_ADDR_LEN", "MAX_GENERATION", "MAX_ID_LEN", "MAX_INCARNATION", "MAX_VERSION",
    "PROTOCOL_VERSION", "Ack", "Alive", "Body", "Dead",
    "DigestEntry", "GossipDecodeError", "GossipItem", "Message", "MsgType", "Nack", "Ping", "PingReq",
    "State", "Status", "Suspect", "SyncEntry", "SyncReq", "SyncResp", "decode", "encode", "entry_size",
    "item_size", "item_wire", "record_body",
]
