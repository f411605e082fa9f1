"""A blocking DEALER client for scripts, tests and the experiment runner.

Daemons use asyncio or pollers; this is for the code that asks a daemon something and
waits: `schedctl` subcommands, the local cluster launcher, the test kits.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from daemons.bus.envelope import Envelope, decode, encode
from daemons.bus.security import CurveClient
from daemons.bus.sockets import make_socket
from daemons.core.messages import StatusReply, StatusRequest


class Client:
    """One DEALER connected to `endpoint`, sending envelopes and waiting for answers."""

    def __init__(self, endpoint: str, name: str = "", curve: CurveClient | None = None) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.name = name or f"client-{uuid.uuid4().hex[:8]}"
        self.sock = make_socket(self.ctx, zmq.DEALER, curve=curve)
        self.sock.connect(endpoint)

    def send(self, body: Any, msg_id: str = "") -> None:
        self.sock.send(encode(body, self.name, msg_id))

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout_s: float = 10.0) -> Envelope:
        if not self.sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no answer within {timeout_s} s")
        return decode(self.sock.recv())

    def until(self, types: set[str], timeout_s: float = 30.0) -> list[Envelope]:
        """Receive until a message of one of `types` arrives; return everything received."""
        got: list[Envelope] = []
        deadline = time.monotonic() + timeout_s
        while not got or got[-1].type not in types:
            got.append(self.recv(max(0.01, deadline - time.monotonic())))
        return got

    def status(self, timeout_s: float = 5.0) -> StatusReply:
        """Ask for the daemon's view; answers to earlier questions are skipped."""
        msg_id = uuid.uuid4().hex
        self.send(StatusRequest(), msg_id)
        deadline = time.monotonic() + timeout_s
        while True:
            env = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(env.body, StatusReply) and env.id == msg_id:
                return env.body

    def answers(self, timeout_s: float = 0.5) -> bool:
        """Whether the daemon answers a status request within `timeout_s` (a readiness probe)."""
        try:
            self.status(timeout_s)
        except TimeoutError:
            return False
        return True

    def wait_answering(self, timeout_s: float, alive: Callable[[], bool] = lambda: True,
                       poll_s: float = 0.5) -> StatusReply:
        """Ask for status until the daemon answers; TimeoutError, or RuntimeError once `alive()` is False
        (the daemon's process has exited: waiting longer would only hide why)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError("the daemon exited before it answered")
            with contextlib.suppress(TimeoutError):
                return self.status(poll_s)
        raise TimeoutError(f"no status answer within {timeout_s} s")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
