"""The state inbox keeps the newest undecoded frame per node and never hides a bad frame."""

from __future__ import annotations

import msgpack

from daemons.bus import decode, encode
from daemons.coordinator.inbox import StateInbox, state_sender
from daemons.coordinator.testing import node_state
from daemons.core.messages import Schedule


def frame(node: str, seq: int) -> bytes:
    return encode(node_state(node, seq=seq), node)


def test_newer_frames_replace_older_ones_and_keep_the_node_s_place() -> None:
    inbox = StateInbox()
    for f in (frame("a", 1), frame("b", 1), frame("a", 2), frame("c", 1), frame("a", 3)):
        inbox.put(f)
    assert len(inbox) == 3 and inbox.superseded == 2
    order = []
    while (f := inbox.pop()) is not None:
        env = decode(f)
        order.append((env.sender, env.body.seq))
    assert order == [("a", 3), ("b", 1), ("c", 1)]


def test_frames_that_are_not_states_or_cannot_be_read_are_never_coalesced() -> None:
    inbox = StateInbox()
    junk = [b"", b"\xc1garbage", msgpack.packb([1, "state"]), msgpack.packb({"a": 1}),
            encode(Schedule("r", "m", 1, 1), "a"), encode(Schedule("r", "m", 1, 1), "a"),
            msgpack.packb([1, "state", "x" * 1000, "", {}])]
    for f in junk:
        inbox.put(f)
    assert len(inbox) == len(junk) and inbox.superseded == 0
    assert [inbox.pop() for _ in junk] == junk


def test_sender_is_read_from_the_header_only() -> None:
    assert state_sender(frame("node-7", 1)) == "node-7"
    assert state_sender(encode(Schedule("r", "m", 1, 1), "node-7")) is None
    assert state_sender(frame("node-7", 1)[:12]) is None
