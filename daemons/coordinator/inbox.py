"""The state inbox: the newest waiting NodeState frame of each node, oldest node first.

Why: a node's state is "latest wins", and taking one in costs more than anything else the
coordinator does per message: with a 20-model catalog, ≈15 µs to decode it when the catalog
is unchanged (recognised, schema.Memo; ≈35 µs when it is new) and ≈10 µs to apply it to the
view, against ≈15 µs for a whole placement decision (`scripts/profile_coordinator.py`, 2-core
reference host). When state frames arrive faster than they can be decoded (100 busy nodes
publishing on every change), decoding all of them would starve the decisions and let the
backlog grow without bound. Instead every frame
is read at once (cheap), and a frame from a node that still has an undecoded one
waiting replaces it, so the decoding work is bounded by the number of nodes, not by
their publication rate.

Reading the sender needs the envelope header only (`[version, type, sender, ...]`),
read here with a tightly bounded msgpack reader. Every frame that is decoded goes through
`daemons.bus.parse_frame` as usual; frames whose header cannot be read are kept as they
are, so the bus logs and drops them exactly once.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgpack

MAX_SENDER_BYTES = 256  # node names are short; a longer "sender" is not coalesced


class StateInbox:
    """Undecoded state frames, at most one per sender, in order of first arrival."""

    def __init__(self) -> None:
        self._frames: dict[Any, bytes] = {}
        self._unique = itertools.count()
        self.superseded = 0  # frames replaced by a newer one from the same node before decoding

    def put(self, frame: bytes) -> None:
        sender = state_sender(frame)
        key: Any = ("?", next(self._unique)) if sender is None else sender
        if key in self._frames:
            self.superseded += 1
        self._frames[key] = frame  # a replaced frame keeps its node's place in the queue

    def pop(self) -> bytes | None:
        """The frame that has waited longest, or None when empty."""
        if not self._frames:
            return None
        key = next(iter(self._frames))
        return self._frames.pop(key)

    def __len__(self) -> int:
        return len(self._frames)


def state_sender(frame: bytes) -> str | None:
    """The sender of a well-formed `state` envelope, or None (the frame is then not coalesced)."""
    header = envelope_header(frame)
    return header[1] if header is not None and header[0] == "state" else None


def envelope_header(frame: bytes) -> tuple[str, str] | None:
    """(type, sender) of an envelope whose header reads well, else None."""
    reader = msgpack.Unpacker(raw=False, max_buffer_size=max(1, len(frame)), max_str_len=MAX_SENDER_BYTES,
                              max_bin_len=0, max_array_len=8, max_map_len=0, max_ext_len=0)
    try:
        reader.feed(frame)
        if reader.read_array_header() != 5:
            return None
        version, mtype, sender = reader.unpack(), reader.unpack(), reader.unpack()
    except Exception:  # any malformed header: leave the verdict (and the log line) to the bus
        return None
    if not isinstance(mtype, str) or not isinstance(sender, str) or isinstance(version, bool):
        return None
    return mtype, sender
