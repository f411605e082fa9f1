"""Liveness, not a wall clock, decides a retry: the load generator against real node agents.

A node reports Progress while it holds a request, so a request decoding for far longer than
the attempt timeout is sent once; a request that really was sent twice (its first node was
silent, then woke up) runs on one node only: the late duplicate is cancelled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from daemons.bus.client import Client
from daemons.loadgen import LoadgenConfig, PlannedRequest, Results, run
from daemons.node.testing import NodeProcess, running_node

SMALL = "facebook/opt-125m"
LLAMA2 = "meta-llama/Llama-2-7b-hf"


def full_log(node: NodeProcess) -> str:
    """The node's whole log (NodeProcess.log() keeps only its tail)."""
    return node.log_path.read_text(errors="replace")


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s:g} s")


def in_flight(node: NodeProcess) -> int:
    with Client(node.bind) as client:
        return int(client.status().nodes[0]["in_flight"])


@pytest.mark.slow
def test_a_request_decoding_for_30_s_is_served_once_and_recorded_ok(tmp_path: Path) -> None:
    # Llama-2-7B on an A10G decodes at >= 27 ms a token (its profile's step floor), so 1,150
    # tokens take over 30 s: fifteen times the attempt timeout below.
    tokens = 1150
    with running_node(tmp_path, gpu="a10g-24gb", models=[LLAMA2], preload=[LLAMA2], checkpoint_tier="gpu",
                      kv_tokens=4096) as node:
        wait_until("the model is loaded", lambda: _ready(node), 60)
        config = LoadgenConfig(mode="gossip", entry=(node.bind,), attempt_timeout_s=2.0, retries=2, timeout_s=120)
        results = run(config, [PlannedRequest("long", 0.0, LLAMA2, 16, tokens)])
        log = full_log(node)
    [rec] = results.records
    assert (rec.status, rec.tokens, rec.attempts, rec.retried) == ("ok", tokens, 1, 0), rec
    assert rec.done_s is not None and rec.first_token_s is not None
    assert rec.done_s - rec.first_token_s >= 30.0, "the request must really decode for 30 s"
    assert log.count("serving long with") == 1 and "duplicate" not in log
    assert results.ignored["late"] == results.ignored["duplicate"] == 0


def _ready(node: NodeProcess) -> bool:
    with Client(node.bind) as client:
        models = client.status().nodes[0]["models"]
    return any(m["state"] == "ready" for m in models)


def first_entry_id(prefix: str, entries: int, index: int) -> str:
    """A request id whose first entry peer (the sender hashes the id) is entry `index`."""
    return next(f"{prefix}{k}" for k in range(1000) if zlib.crc32(f"{prefix}{k}".encode()) % entries == index)


def test_a_late_duplicate_is_cancelled_not_raced(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        first, second = (stack.enter_context(running_node(tmp_path, name, models=[SMALL], preload=[SMALL],
                                                          checkpoint_tier="gpu")) for name in ("node-a", "node-b"))
        for node in (first, second):
            wait_until("the model is loaded", lambda n=node: _ready(n), 60)  # type: ignore[misc]
        rid = first_entry_id("dup", 2, 0)
        # Silent for longer than the attempt timeout (2.5 s, well over the nodes' 1 s Progress):
        # the request waits on node-a unanswered, so it is sent again, to node-b.
        os.kill(first.proc.pid, signal.SIGSTOP)
        stop = threading.Event()
        config = LoadgenConfig(mode="gossip", entry=(first.bind, second.bind), attempt_timeout_s=2.5,
                               retries=2, timeout_s=120)
        out: list[Results] = []
        request = PlannedRequest(rid, 0.0, SMALL, 4, 2000)  # >= 4 s of decoding on node-b
        thread = threading.Thread(target=lambda: out.append(run(config, [request], stop=stop)))
        thread.start()
        try:
            wait_until("the retry runs on the second node", lambda: in_flight(second) == 1)
            os.kill(first.proc.pid, signal.SIGCONT)  # node-a wakes up, finds the request and starts it late
            wait_until("the late duplicate is cancelled", lambda: f"cancelling {rid}" in full_log(first))
            wait_until("the first node is free again", lambda: in_flight(first) == 0)
        finally:
            os.kill(first.proc.pid, signal.SIGCONT)
            thread.join(timeout=120)
            stop.set()
            thread.join(timeout=10)
    [rec] = out[0].records
    assert (rec.status, rec.node, rec.tokens, rec.attempts) == ("ok", "node-b", 2000, 2), rec
    assert full_log(second).count(f"serving {rid} with") == 1
    assert out[0].ignored["duplicate"] >= 1  # node-a's reports, each answered with a Cancel
