"""The coordinator orders live migrations: its periodic rebalancer, and an operator's Migrate.

A real coordinator and two real node agents (emulator instances) on loopback; the client
streams every token (`Infer.stream`) and checks each stream whole after the moves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from daemons.bus.client import Client
from daemons.coordinator.testing import CoordinatorProcess, running_coordinator
from daemons.core.messages import Error, Infer, Migrate
from daemons.node.testing import NodeProcess, running_node
from tests.node.test_migration import SMALL, Stream, receive

NODES = ("node-0", "node-1")


@contextlib.contextmanager
def cluster(tmp: Path, *flags: str) -> Iterator[tuple[CoordinatorProcess, NodeProcess, NodeProcess]]:
    with running_coordinator(tmp, *flags) as coord, contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(running_node(tmp, name, models=[SMALL], checkpoint_tier="gpu", preload=[SMALL],
                                                  publish_to=[coord.state_bind], publish_interval_s=0.2))
                 for name in NODES]
        with Client(coord.bind) as admin:
            _wait_ready(admin)
        yield coord, nodes[0], nodes[1]


def _wait_ready(admin: Client) -> None:
    """Until the coordinator sees both nodes with the model ready."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = admin.status().nodes
        ready = {r["node"] for r in rows if r.get("alive") and any(m["state"] == "ready" for m in r["models"])}
        if ready >= set(NODES):
            return
        time.sleep(0.1)
    raise AssertionError(f"nodes not ready at the coordinator: {rows}")


def test_rebalancer_moves_running_requests_off_the_loaded_node(tmp_path: Path) -> None:
    with cluster(tmp_path, "--rebalance") as (coord, src, _), Client(src.bind) as client:
        streams = {f"b{k}": Stream() for k in range(5)}
        for rid in streams:  # all on node-0: node-1 idles with the model loaded
            client.send(Infer(rid, SMALL, "a b c d e f", 2000, stream=True), rid)
        while not all(s.finals for s in streams.values()):
            env = client.recv(60)
            streams[env.id].take(env)
        for s in streams.values():
            s.check_complete(2000)
        moved = [rid for rid, s in streams.items() if s.handovers]
        assert moved and all(streams[rid].nodes() == ["node-0", "node-1"] for rid in moved)
        assert "rebalance: moving a facebook/opt-125m request from node-0 to node-1" in coord.log()


def test_an_operators_migrate_is_forwarded_and_a_bad_one_refused(tmp_path: Path) -> None:
    with cluster(tmp_path) as (coord, src, _), Client(src.bind) as client, Client(coord.bind) as admin:
        stream = Stream()
        client.send(Infer("op", SMALL, "a b c d e f", 2000, stream=True), "op")
        receive(client, stream, until=20)
        admin.send(Migrate("op", "node-0", "node-1", "", "operator test"), "op")
        receive(client, stream)
        stream.check_complete(2000)
        assert stream.nodes() == ["node-0", "node-1"]
        admin.send(Migrate("x", "node-0", "node-9", ""), "x")
        refused = admin.recv(5).body
        assert isinstance(refused, Error) and refused.code == "bad_migration" and "node-9" in refused.message
        assert "rebalance" not in coord.log()
