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
from daemons.core.messages import Cancel, Done, Error, Handover, Infer, Migrate, StreamToken
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


@contextlib.contextmanager
def slow_destination(tmp: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """node-0 serves at once; node-1 needs seconds to load the model: a migration to it is
    still in its first round when the test kills one side."""
    with running_node(tmp, "node-0", models=[SMALL], checkpoint_tier="gpu", preload=[SMALL]) as a, \
            running_node(tmp, "node-1", models=[SMALL], checkpoint_tier="gpu", init_s=4.0) as b:
        yield a, b


def kill(node: NodeProcess) -> None:
    """SIGKILL a node and its backend instances (nothing of it may answer any more)."""
    kids = node.children()
    node.proc.kill()
    node.proc.wait()
    for kid in kids:
        with contextlib.suppress(Exception):
            kid.kill()


def wait_log(node: NodeProcess, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in node.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log of {node.bind}: {node.log()[-3000:]}"
        time.sleep(0.05)


def test_destination_killed_during_migration_source_keeps_serving(tmp_path: Path) -> None:
    with slow_destination(tmp_path) as (src, dst), Client(src.bind) as client:
        client.send(Infer("r2", SMALL, "a b c d e f", 2000, stream=True), "r2")
        stream = Stream()
        receive(client, stream, until=20)
        client.send(Migrate("r2", "node-0", "node-1", dst.bind, "test"), "r2")
        wait_log(dst, "launching")  # its first round waits for the model to load
        kill(dst)
        receive(client, stream)
        stream.check_complete(2000)
        assert stream.nodes() == ["node-0"] and not stream.handovers
        assert "abandoned" in src.log() and "it stays here" in src.log()


def test_source_killed_during_migration_request_retried_once(tmp_path: Path) -> None:
    with slow_destination(tmp_path) as (src, dst), Client(src.bind) as client:
        client.send(Infer("r3", SMALL, "a b c d e f", 2000, stream=True), "r3")
        receive(client, Stream(), until=20)
        client.send(Migrate("r3", "node-0", "node-1", dst.bind, "test"), "r3")
        wait_log(dst, "launching")
        kill(src)
        # The destination finishes its round for nobody and never serves the request on its own.
        wait_log(dst, "could not answer r3 with resume_ready")
        assert "serving r3" not in dst.log()
        # The load generator retries it (its link to the source dropped): served once, whole.
        with Client(dst.bind) as retry:
            retry.send(Infer("r3", SMALL, "a b c d e f", 300, stream=True), "r3")
            stream = Stream()
            receive(retry, stream)
            stream.check_complete(300)
            assert stream.nodes() == ["node-1"]
            assert retry.status().nodes[0]["in_flight"] == 0


def test_destination_killed_after_the_switch_source_resumes(tmp_path: Path) -> None:
    with running_node(tmp_path, "node-0", models=[SMALL], checkpoint_tier="gpu", preload=[SMALL]) as src, \
            running_node(tmp_path, "node-1", models=[SMALL], checkpoint_tier="gpu", preload=[SMALL]) as dst, \
            Client(src.bind) as client:
        client.send(Infer("r4", SMALL, "a b c d e f", 2000, stream=True), "r4")
        stream = Stream()
        receive(client, stream, until=20)
        client.send(Migrate("r4", "node-0", "node-1", dst.bind, "test"), "r4")
        deadline = time.monotonic() + 30
        while not any(t.node == "node-1" for t in stream.tokens[-1:]):
            assert time.monotonic() < deadline and not stream.finals, "no token from the destination"
            stream.take(client.recv(10))
        kill(dst)
        receive(client, stream)
        stream.check_complete(2000)
        assert stream.nodes() == ["node-0", "node-1", "node-0"], stream.nodes()
        assert [(h.node, h.to_node) for h in stream.handovers] == [("node-0", "node-1"), ("node-1", "node-0")]
        back = next(i for i, t in enumerate(stream.tokens) if i and t.node == "node-0"
                    and stream.tokens[i - 1].node == "node-1")
        assert stream.handovers[1].tokens == back
        assert "failed after the switch" in src.log()


def test_a_cancel_that_reaches_the_destination_ends_the_request_once(tmp_path: Path) -> None:
    """A gossip peer relays a client's Cancel to the node it names, the destination: the
    source does not take the request back, and the client hears one `cancelled`."""
    with two_nodes(tmp_path) as (src, dst), Client(src.bind) as client, Client(dst.bind) as admin:
        client.send(Infer("r5", SMALL, "a b c d e f", 2000, stream=True), "r5")
        stream = Stream()
        receive(client, stream, until=20)
        client.send(Migrate("r5", "node-0", "node-1", dst.bind, "test"), "r5")
        deadline = time.monotonic() + 30
        while not any(t.node == "node-1" for t in stream.tokens[-1:]):
            assert time.monotonic() < deadline and not stream.finals, "no token from the destination"
            stream.take(client.recv(10))
        admin.send(Cancel("r5", "node-1", "the client gave up"), "r5")
        receive(client, stream)
        [final] = stream.finals
        assert isinstance(final.body, Error) and final.body.code == "cancelled", final.body
        assert "resuming it here" not in src.log() and stream.nodes() == ["node-0", "node-1"]
