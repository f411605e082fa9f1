"""A node's requests stay alive on the wire: Progress while serving, duplicates attached, Cancel frees the slot.

Real node agent and emulator processes on loopback, driven through the node's ROUTER.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from daemons.bus.client import Client
from daemons.core.messages import Cancel, Error, Infer, Progress
from daemons.node.backend import httpx, parse_gauges
from daemons.node.testing import NodeProcess, running_node, wait_until

SMALL = "facebook/opt-125m"


def emulator_batch(node: NodeProcess) -> float:
    """Requests the node's one emulator instance is generating for now (its TGI /metrics)."""
    [instance] = [p for p in node.children() if "--port" in p.cmdline()]
    cmd = instance.cmdline()
    port = cmd[cmd.index("--port") + 1]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return parse_gauges(text, ("tgi_batch_current_size",)).get("tgi_batch_current_size", 0.0)


def in_flight(client: Client) -> int:
    return int(client.status().nodes[0]["in_flight"])


def test_progress_attached_duplicate_and_cancel(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL], checkpoint_tier="gpu") as node:
        first, duplicate, admin = Client(node.bind), Client(node.bind), Client(node.bind)
        # Long enough to be running through the whole test: 2,000 decode steps of >= 1 ms each.
        first.send(Infer("long", SMALL, "a b c d", 2000), "long")
        got = first.until({"first_token"}, timeout_s=60)  # Progress (tokens 0) while it loads, if it takes long
        assert all(e.type == "progress" for e in got[:-1]), got
        beat = first.until({"progress"}, timeout_s=10)[-1].body  # about a second later
        assert isinstance(beat, Progress) and beat.node == "node-0" and beat.tokens > 0

        # A retry of the running request reaches the same node: it hears the one run, nobody runs it twice.
        duplicate.send(Infer("long", SMALL, "a b c d", 2000), "long")
        attached = duplicate.until({"progress"}, timeout_s=10)[-1].body
        assert isinstance(attached, Progress) and attached.tokens > 0
        assert node.log().count("serving long with") == 1 and "attached to the running one" in node.log()
        assert in_flight(admin) == 1

        # A Cancel for another node is not ours; one naming us stops it and frees the slot.
        admin.send(Cancel("long", "node-9", "test"), "long")
        admin.send(Cancel("long", "node-0", "another node serves it"), "long")
        for client in (first, duplicate):  # everyone waiting hears that it ended, and how
            end = client.until({"done", "error"}, timeout_s=10)[-1].body
            assert isinstance(end, Error) and end.code == "cancelled", end
        wait_until("the node frees the request", lambda: in_flight(admin) == 0)
        wait_until("the emulator stops generating", lambda: emulator_batch(node) == 0)
        models = admin.status().nodes[0]["models"]
        assert [m["running"] for m in models] == [0], models

        # The node still serves, and a Cancel of a request it does not hold changes nothing.
        admin.send(Cancel("nothing", "node-0"), "nothing")
        first.send(Infer("after", SMALL, "a b c", 3), "after")
        assert first.until({"done", "error"}, timeout_s=30)[-1].type == "done"
        assert psutil.Process(node.proc.pid).is_running()
        for client in (first, duplicate, admin):
            client.close()
