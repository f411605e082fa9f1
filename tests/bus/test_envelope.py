"""The envelope codec: round trips, and every kind of hostile frame refused with a WireError."""

from __future__ import annotations

import msgpack
import pytest

from daemons.bus import DecodeError, SchemaError, decode, encode
from daemons.bus.envelope import MAX_FRAME_BYTES
from daemons.core.messages import Done, GpuState, Infer, ModelState, NodeState, Schedule
from daemons.core.schema import to_dict


def test_round_trip_keeps_every_field() -> None:
    msg = Infer(request_id="r1", model="m", prompt="a b c", max_new_tokens=8, action="COLD_START",
                hops=1, route=["node-0"])
    env = decode(encode(msg, sender="loadgen", msg_id="r1"))
    assert (env.type, env.sender, env.id, env.body) == ("infer", "loadgen", "r1", msg)


def test_nested_dataclasses_round_trip() -> None:
    state = NodeState(node="n0", endpoint="tcp://127.0.0.1:1", gen=7, seq=3,
                      gpus=[GpuState(0, "a100-80gb", 80, 10, 0.5)],
                      models=[ModelState("m", "ready", queue_depth=2)], queue_depth=2)
    assert decode(encode(state, "n0")).body == state


def test_int_is_accepted_for_float_but_bool_is_not_int() -> None:
    frame = msgpack.packb([1, "done", "n", "r", {"request_id": "r", "node": "n", "tokens": 3,
                                                 "finish_reason": "length", "timings": {"x": 1}}])
    assert decode(frame).body == Done("r", "n", 3, "length", timings={"x": 1.0})
    bad = msgpack.packb([1, "done", "n", "r", {"request_id": "r", "node": "n", "tokens": True,
                                               "finish_reason": "length"}])
    with pytest.raises(SchemaError, match="tokens"):
        decode(bad)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"\xc1\xff\x00garbage", "not a msgpack"),
        (msgpack.packb({"a": 1}), "5-element"),
        (msgpack.packb([2, "infer", "x", "y", {}]), "version"),
        (msgpack.packb([1, "launch_missiles", "x", "y", {}]), "unknown message type"),
        (msgpack.packb([1, "infer", "x", "y", {"request_id": 5}]), "request_id"),
        (msgpack.packb([1, "infer", "x", "y", {"request_id": "r"}]), "missing"),
        (msgpack.packb([1, "schedule", "x", "y", {**to_dict(Schedule("r", "m", 1, 1)), "evil": 1}]),
         "unknown field"),
        (msgpack.packb([1, "infer", "x", "y", msgpack.ExtType(42, b"pickle")]), "ext"),
        (msgpack.packb([1, "infer", "x", "y", {"request_id": "r"}])[:-3], "not a msgpack"),
        (b"\x91" * 5000 + b"\x90", "not a msgpack"),
        (b"\x00" * (MAX_FRAME_BYTES + 1), "exceeds"),
    ],
)
def test_hostile_frames_raise_wire_errors(frame: bytes, match: str) -> None:
    with pytest.raises((DecodeError, SchemaError), match=match):
        decode(frame)


def test_encode_writes_what_msgpack_packb_writes_also_after_a_failed_encode() -> None:
    msg = Schedule("r1", "m", 10, 5, exclude=["n1"])
    expected = msgpack.packb([1, "schedule", "lg", "r1", to_dict(msg)], use_bin_type=True)
    assert encode(msg, "lg", "r1") == expected
    with pytest.raises(TypeError):  # an unpackable value: the thread's Packer must start clean after it
        encode(Schedule("r2", "m", 10, 5, exclude=[object()]), "lg", "r2")  # type: ignore[list-item]
    assert encode(msg, "lg", "r1") == expected
