"""The coordinator with a real node agent (and its emulator instance) publishing to it:
the contract between the two, end to end, as the loadgen will use it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from daemons.coordinator.testing import Client, running_coordinator, schedctl
from daemons.core.messages import Done, Infer, Placement

SMALL = "facebook/opt-125m"


def test_placement_then_infer_on_a_real_node(tmp_path: Path) -> None:
    from daemons.node.testing import running_node

    with running_coordinator(tmp_path, dead_after=3.0) as coord, \
            running_node(tmp_path, models=[SMALL], checkpoint_tier="gpu", publish_to=[coord.state_bind]) as node, \
            Client(coord.bind) as client:
        reply = client.wait_for_nodes({"node-0"}, timeout_s=20)
        (row,) = reply.nodes
        assert row["endpoint"] == node.bind and row["memory_total"] > 0
        first = client.schedule("e2e-1", SMALL).body
        assert isinstance(first, Placement), first
        assert (first.node, first.endpoint, first.action) == ("node-0", node.bind, "COLD_START")
        with Client(first.endpoint) as to_node:
            to_node.send(Infer("e2e-1", SMALL, "hello " * 8, 4, first.action), "e2e-1")
            done = _until_done(to_node)
            assert done.tokens == 4
            deadline = time.monotonic() + 10  # the node publishes the model as ready
            while True:
                second = client.schedule(f"e2e-{time.monotonic()}", SMALL).body
                assert isinstance(second, Placement)
                if second.action == "SERVE":
                    break
                assert time.monotonic() < deadline, "the loaded model never showed up as ready"
                time.sleep(0.1)
        unknown = client.schedule("e2e-x", "nobody/nothing").body
        assert getattr(unknown, "code", None) == "unknown_model"
        for flag, address in (("--coordinator", coord.bind), ("--node", node.bind)):
            out = subprocess.run([schedctl(), "status", flag, address], capture_output=True, text=True,
                                 timeout=30)
            assert out.returncode == 0, out.stderr
            row = next(line for line in out.stdout.splitlines() if line.startswith("node-0"))
            assert f"{SMALL} ready" in row and "GiB" in row, out.stdout


def _until_done(client: Client) -> Done:
    for _ in range(10):
        body = client.recv(60).body
        if isinstance(body, Done):
            return body
    raise AssertionError("no done")
