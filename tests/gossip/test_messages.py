"""Codec round trips and the hardened decoder: every hostile frame raises GossipDecodeError."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from daemons.gossip.config import MAX_FRAME_BYTES
from daemons.gossip.messages import (
    Ack,
    Alive,
    Dead,
    DigestEntry,
    GossipDecodeError,
    Message,
    MsgType,
    Nack,
    Ping,
    PingReq,
    State,
    Status,
    Suspect,
    SyncEntry,
    SyncReq,
    SyncResp,
    decode,
    encode,
)

RECORD = {"gpus": [{"idx": 0, "mem_total": 80 << 30, "util": 0.25}], "models": ["m"], "q": None, "b": b"\x00"}
SAMPLES = [
    Message("a", 1, 7, Ping("b")),
    Message("a", 1, 7, Ack()),
    Message("a", 1, 7, PingReq("b", "tcp://127.0.0.1:5561")),
    Message("a", 1, 7, Nack()),
    Message("a", 3, 0, Alive("a", "tcp://h:1", 1700000000000, 3), (Suspect("c", 1, 2, "a"),)),
    Message("a", 0, 0, Dead("c", 1, 2, "a"), (State("a", 9, 4, RECORD), Alive("x", "tcp://x:1", 2, 0))),
    Message("a", 0, 0, SyncReq(True, (DigestEntry("a", 1, 0, Status.ALIVE, -1),))),
    Message("a", 0, 0, SyncResp(
        True, (DigestEntry("a", 1, 0, Status.LEFT, 3),),
        (
            SyncEntry("c", "tcp://c:1", 1, 2, Status.SUSPECT, 1, RECORD),
            SyncEntry("d", "tcp://d:1", 1, 0, Status.DEAD, -1, None),
        ),
    )),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.type.name)
def test_round_trip(msg: Message) -> None:
    frame = encode(msg)
    assert decode(frame) == msg
    raw = msgpack.unpackb(frame)
    assert raw[:5] == [1, int(msg.type), msg.sender, msg.incarnation, msg.seq]


def frame(*fields: Any) -> bytes:
    return bytes(msgpack.packb(list(fields), use_bin_type=True))


HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "not msgpack": b"\xc1\xc1\xc1",
    "truncated": encode(SAMPLES[4])[:-3],
    "trailing bytes": encode(SAMPLES[0]) + b"\x90",
    "oversize": b"\x00" * (MAX_FRAME_BYTES + 1),
    "a map": msgpack.packb({"type": 1}),
    "short array": frame(1, 1, "a", 0, 0, ["b"]),
    "wrong version": frame(2, 1, "a", 0, 0, ["b"], []),
    "bool version": frame(True, 1, "a", 0, 0, ["b"], []),
    "unknown type": frame(1, 99, "a", 0, 0, [], []),
    "type as str": frame(1, "PING", "a", 0, 0, ["b"], []),
    "sender not str": frame(1, 1, b"a", 0, 0, ["b"], []),
    "empty sender": frame(1, 1, "", 0, 0, ["b"], []),
    "sender control chars": frame(1, 1, "a\x00b", 0, 0, ["b"], []),
    "sender too long": frame(1, 1, "a" * 1000, 0, 0, ["b"], []),
    "negative incarnation": frame(1, 1, "a", -1, 0, ["b"], []),
    "bool seq": frame(1, 1, "a", 0, True, ["b"], []),
    "float seq": frame(1, 1, "a", 0, 1.5, ["b"], []),
    "huge int": frame(1, 1, "a", 0, 2**64 - 1, ["b"], []),
    "body arity": frame(1, 1, "a", 0, 0, ["b", "c"], []),
    "body not array": frame(1, 1, "a", 0, 0, {"target": "b"}, []),
    "ping in piggyback": frame(1, 2, "a", 0, 0, [], [[1, ["b"]]]),
    "piggyback not list": frame(1, 2, "a", 0, 0, [], "x"),
    "item not pair": frame(1, 2, "a", 0, 0, [], [[5]]),
    "bad status": frame(1, 9, "a", 0, 0, [False, [["a", 1, 0, 7, -1]]], []),
    "ver below -1": frame(1, 9, "a", 0, 0, [False, [["a", 1, 0, 0, -2]]], []),
    "join not bool": frame(1, 9, "a", 0, 0, [1, []], []),
    "record not map": frame(1, 8, "a", 0, 0, ["a", 1, 1, [1, 2]], []),
    "record int key": msgpack.packb([1, 8, "a", 0, 0, ["a", 1, 1, {1: 2}], []]),
    "record nan": frame(1, 8, "a", 0, 0, ["a", 1, 1, {"x": float("nan")}], []),
    "record too deep": frame(1, 8, "a", 0, 0, ["a", 1, 1, {"x": [[[[[[[[[[[1]]]]]]]]]]]}], []),
    "ext type": frame(1, 8, "a", 0, 0, ["a", 1, 1, {"x": msgpack.ExtType(5, b"xx")}], []),
    "timestamp ext": frame(1, 8, "a", 0, 0, ["a", 1, 1, {"x": msgpack.Timestamp(1, 0)}], []),
    "deep nesting bomb": b"\x91" * 100_000 + b"\xc0",
    "claims huge array": b"\xdd\xff\xff\xff\xff",
    "claims huge str": b"\xdb\xff\xff\xff\xff",
    "too many items": frame(1, 2, "a", 0, 0, [], [[5, ["a", "x", 1, 0]]] * 2000),
}


@pytest.mark.parametrize("raw", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_frames_rejected(raw: bytes) -> None:
    with pytest.raises(GossipDecodeError) as info:
        decode(raw)
    assert info.value.cause  # a short label to log once per cause


def test_non_bytes_rejected() -> None:
    with pytest.raises(GossipDecodeError):
        decode("text")  # type: ignore[arg-type]


def test_mutation_fuzz_only_raises_decode_error() -> None:
    rng = random.Random(1234)
    frames = [encode(m) for m in SAMPLES]
    ok = bad = 0
    for _ in range(5000):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.5:
                data[pos] = rng.randrange(256)
            elif op < 0.75:
                del data[pos]
            else:
                data.insert(pos, rng.randrange(256))
        try:
            msg = decode(bytes(data))
        except GossipDecodeError:
            bad += 1
        else:
            ok += 1
            assert isinstance(msg.type, MsgType)
            assert decode(encode(msg)) == msg
    assert bad > 0 and ok + bad == 5000
