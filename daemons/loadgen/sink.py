"""A stand-in cluster for tests and benchmarks: one ROUTER playing coordinator and node.

It answers `Schedule` with a `Placement` pointing at itself and `Infer` with `FirstToken`
then `Done`, at once, unless a *script* says otherwise. A `StatusRequest` (the load
generator asks for the nodes' view twice a second) is answered by `view()`, an empty
coordinator's view unless given, and a `Cancel` is only counted (`received["cancel"]`),
whatever the script. A script maps each received
envelope to the replies to send and when, which is how tests build slow, silent, failing,
duplicating or garbage-sending peers on real sockets:

    def script(env, endpoint):
        if env.body.request_id.endswith("7"):
            return []                                  # never answer
        return immediate(env, endpoint)                # or [(delay_s, message | bytes), ...]

Run it in a thread (`running_sink`) or as a process of its own, which prints its endpoint
on the first line of stdout and serves until its stdin closes:

    python -m daemons.loadgen.sink [--max-s SECONDS]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import zmq

from daemons.bus import Envelope, WireError, decode, encode, make_socket
from daemons.core.messages import Cancel, Done, FirstToken, Infer, Placement, Schedule, StatusReply, StatusRequest

Reply = tuple[float, Any]  # (delay in seconds, a message dataclass | raw bytes | list of raw parts)
Script = Callable[[Envelope, str], Iterable[Reply]]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


def immediate(env: Envelope, endpoint: str) -> list[Reply]:
    """A perfect cluster: place on this sink, then stream one token and finish at once."""
    body = env.body
    if isinstance(body, Schedule):
        return [(0.0, Placement(body.request_id, "sink", endpoint, "SERVE", 0.0, "sink"))]
    if isinstance(body, Infer):
        action = body.action or "SERVE"
        return [(0.0, FirstToken(body.request_id, "sink", "x")),
                (0.0, Done(body.request_id, "sink", body.max_new_tokens, "length", action))]
    return []


def empty_view() -> StatusReply:
    return StatusReply("coordinator", [])


class Sink:
    """A ROUTER bound on loopback that answers as its script says."""

    def __init__(self, script: Script = immediate, bind: str = "tcp://127.0.0.1:*",
                 name: str = "sink", view: Callable[[], StatusReply] = empty_view) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = make_socket(self.ctx, zmq.ROUTER)
        self.sock.bind(bind)
        self.endpoint: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.received: Counter[str] = Counter()
        self._script = script
        self._view = view
        self._name = name
        self._pending: list[tuple[float, int, bytes, list[bytes]]] = []
        self._seq = itertools.count()

    def serve(self, stop: StopFlag, max_s: float = 3600.0) -> None:
        """Answer until `stop` is set (or `max_s` passes: a forgotten sink must not run forever)."""
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        end = time.monotonic() + max_s
        while not stop.is_set() and time.monotonic() < end:
            due = self._pending[0][0] - time.monotonic() if self._pending else 0.05
            if poller.poll(max(0, min(50, int(due * 1000)))):
                self._receive()
            self._flush()

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def _receive(self) -> None:
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                self.received["malformed"] += 1
                continue
            try:
                env = decode(parts[1])
            except WireError:
                self.received["malformed"] += 1
                continue
            self.received[env.type] += 1
            now = time.monotonic()
            if isinstance(env.body, Cancel):
                continue
            replies = [(0.0, self._view())] if isinstance(env.body, StatusRequest) else self._script(env, self.endpoint)
            for delay, reply in replies:
                frames = self._frames(reply, env)
                heapq.heappush(self._pending, (now + delay, next(self._seq), parts[0], frames))
            self._flush()

    def _frames(self, reply: Any, env: Envelope) -> list[bytes]:
        if isinstance(reply, bytes):
            return [reply]
        if isinstance(reply, list):
            return reply
        return [encode(reply, self._name, msg_id=env.id)]

    def _flush(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            _, _, identity, frames = heapq.heappop(self._pending)
            try:
                self.sock.send_multipart([identity, *frames], zmq.NOBLOCK)
            except zmq.ZMQError:
                self.received["unroutable"] += 1  # the loadgen is gone: ROUTER_MANDATORY says so


@contextmanager
def running_sink(script: Script = immediate, view: Callable[[], StatusReply] = empty_view) -> Iterator[Sink]:
    """A sink serving in a thread for the duration of the block; stopped, joined and closed after."""
    sink = Sink(script, view=view)
    stop = threading.Event()
    thread = threading.Thread(target=sink.serve, args=(stop,), name="loadgen-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        stop.set()
        thread.join(timeout=5)
        sink.close()


def _stdin_closed(flag: threading.Event) -> None:
    sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
    flag.set()


def main(argv: list[str] | None = None) -> None:
    """Serve the immediate script in this process until stdin closes or --max-s passes."""
    parser = argparse.ArgumentParser(description="An immediate-answer coordinator + node for benchmarks.")
    parser.add_argument("--max-s", type=float, default=900.0, help="exit after this long in any case")
    args = parser.parse_args(argv)
    sink = Sink()
    stop = threading.Event()
    threading.Thread(target=_stdin_closed, args=(stop,), daemon=True).start()
    print(sink.endpoint, flush=True)
    try:
        sink.serve(stop, max_s=args.max_s)
    finally:
        sink.close()


if __name__ == "__main__":
    main()
