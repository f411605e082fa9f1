"""Live migration of a running request between two real node agents (emulator instances).

The client (a DEALER, like the load generator's) asks for every token (`Infer.stream`) and
checks its stream token by token: contiguous indices from 0, none twice, exactly
`max_new_tokens`, one final answer, whatever happens to the migration.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daemons.bus.client import Client
from daemons.bus.envelope import Envelope
from daemons.core.messages import Done, Error, Handover, Infer, Migrate, StreamToken
from daemons.node.testing import NodeProcess, running_node

SMALL = "facebook/opt-125m"


@dataclass
class Stream:
    """What the client saw of one request."""

    tokens: list[StreamToken] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    finals: list[Envelope] = field(default_factory=list)

    def take(self, env: Envelope) -> None:
        if isinstance(env.body, StreamToken):
            self.tokens.append(env.body)
            self.times.append(time.monotonic())
        elif isinstance(env.body, Handover):
            self.handovers.append(env.body)
        elif isinstance(env.body, Done | Error):
            self.finals.append(env)

    def check_complete(self, n: int) -> Done:
        """Exactly one answer, a Done of `n` tokens, and the stream 0..n-1 in order, once each."""
        assert len(self.finals) == 1, self.finals
        done = self.finals[0].body
        assert isinstance(done, Done), done
        assert done.tokens == n
        assert [t.index for t in self.tokens] == list(range(n))
        return done

    def nodes(self) -> list[str]:
        """The nodes that generated the stream, in order, once per run of tokens."""
        out: list[str] = []
        for t in self.tokens:
            if not out or out[-1] != t.node:
                out.append(t.node)
        return out


@contextlib.contextmanager
def two_nodes(tmp: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    with running_node(tmp, "node-0", models=[SMALL], checkpoint_tier="gpu", preload=[SMALL]) as a, \
            running_node(tmp, "node-1", models=[SMALL], checkpoint_tier="gpu") as b:
        yield a, b


def receive(client: Client, stream: Stream, until: int = 0, timeout_s: float = 60.0) -> None:
    """Take messages until `until` tokens arrived (0: until the final answer)."""
    deadline = time.monotonic() + timeout_s
    while (len(stream.tokens) < until) if until else not stream.finals:
        stream.take(client.recv(max(0.01, deadline - time.monotonic())))


def test_migration_mid_stream_keeps_one_stream(tmp_path: Path) -> None:
    with two_nodes(tmp_path) as (src, dst), Client(src.bind) as client:
        client.send(Infer("r1", SMALL, "a b c d e f", 2000, stream=True), "r1")
        stream = Stream()
        receive(client, stream, until=50)
        client.send(Migrate("r1", "node-0", "node-1", dst.bind, "test"), "r1")
        receive(client, stream)
        done = stream.check_complete(2000)
        assert stream.nodes() == ["node-0", "node-1"], stream.nodes()
        [handover] = stream.handovers
        switch = next(i for i, t in enumerate(stream.tokens) if t.node == "node-1")
        assert handover.to_node == "node-1" and handover.tokens == switch and 50 <= switch < 2000
        assert done.node == "node-1" and done.timings["migration_tokens"] == switch
        assert done.timings["migration_gap_s"] > 0 and done.timings["migration_resume_s"] > 0
        assert "migrated r1 to node-1" in src.log()
