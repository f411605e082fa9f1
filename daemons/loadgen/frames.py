"""What the load generator puts on the wire: prompts and pre-encoded request frames.

Encoding a message costs several microseconds (dataclass → dict → msgpack); at 1,000
requests/s with CV 8, a hundred requests can fall due in the same millisecond, and
encoding them at their deadline would show up as send lag. So the frames of the next
requests are encoded ahead, while the sender waits anyway (`FrameWindow.fill`).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Protocol

from daemons.bus import encode
from daemons.core.messages import Infer, Schedule
from daemons.loadgen.workload import PlannedRequest

# Short common words: ~5 bytes each, so a 100,000-token prompt stays far below the 1 MiB frame cap.
_WORDS = (
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "are", "with", "as", "by", "at", "be",
    "this", "from", "or", "have", "an", "they", "which", "one", "you", "were", "her", "all", "she",
    "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more", "no", "if",
    "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other",
    "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now",
    "such", "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did", "many",
    "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down", "should",
    "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very", "make",
    "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both", "life",
    "being", "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great",
    "old", "year", "off", "come", "since", "against", "go", "came", "right",
)
_TAPE_LEN = 4096
_TAPE: list[str] = random.Random(20240501).choices(_WORDS, k=_TAPE_LEN)


class RequestLike(Protocol):
    """What an Infer needs from a request: a PlannedRequest or a RequestRecord."""

    @property
    def request_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def max_new_tokens(self) -> int: ...
    @property
    def klass(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def slo_ttft_ms(self) -> float: ...


def make_prompt(request_id: str, tokens: int) -> str:
    """Exactly `tokens` space-separated words, the same for the same request id everywhere.

    The emulator counts one token per word. The start position on a fixed pseudo-random tape
    comes from a CRC of the id, so prompts differ between requests (no accidental prefix
    sharing) and cost one slice and one join to build.
    """
    start = zlib.crc32(request_id.encode()) % _TAPE_LEN
    words = _TAPE[start:start + tokens]
    while len(words) < tokens:
        words += _TAPE[:tokens - len(words)]
    return " ".join(words)


def schedule_frame(req: RequestLike, sender: str, priority: int = 0, exclude: list[str] | None = None) -> bytes:
    """Centralized mode: ask the coordinator where to run `req`; `priority` for a request
    without a class (`[loadgen] priority`), a classed one carries its class's."""
    msg = Schedule(req.request_id, req.model, req.prompt_tokens, req.max_new_tokens,
                   req.priority if req.klass else priority, exclude or [], slo_ttft_s=req.slo_ttft_ms / 1000)
    return encode(msg, sender, msg_id=req.request_id)


def infer_frame(req: RequestLike, sender: str, action: str, epoch: int = 0, priority: int = 0) -> bytes:
    """Run `req` on a node; action "" lets a gossip peer decide where it runs; `epoch` is the
    placing coordinator's (nodes refuse epochs older than the newest they know); `priority`
    as in `schedule_frame`."""
    msg = Infer(req.request_id, req.model, make_prompt(req.request_id, req.prompt_tokens),
                req.max_new_tokens, action, epoch=epoch, priority=req.priority if req.klass else priority,
                slo_ttft_s=req.slo_ttft_ms / 1000)
    return encode(msg, sender, msg_id=req.request_id)


class FrameWindow:
    """The encoded first frames of the next `size` requests of a schedule, built ahead."""

    def __init__(self, schedule: list[PlannedRequest], make: Callable[[PlannedRequest], bytes],
                 size: int = 1024) -> None:
        self._schedule = schedule
        self._make = make
        self._size = size
        self._frames: dict[int, bytes] = {}
        self._filled = 0  # index of the next request not yet encoded

    def take(self, index: int) -> bytes:
        """The frame of request `index`, encoded now if the window had not reached it."""
        frame = self._frames.pop(index, None)
        return frame if frame is not None else self._make(self._schedule[index])

    def fill(self, next_index: int, keep_going: Callable[[], bool], batch: int = 16) -> None:
        """Encode ahead of `next_index`, `batch` at a time, while `keep_going()` says so."""
        self._filled = max(self._filled, next_index)
        limit = min(len(self._schedule), next_index + self._size)
        while self._filled < limit and keep_going():
            for i in range(self._filled, min(limit, self._filled + batch)):
                self._frames[i] = self._make(self._schedule[i])
            self._filled = min(limit, self._filled + batch)
