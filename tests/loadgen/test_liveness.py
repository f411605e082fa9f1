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
from pathlib import Path
from typing import Any

import pytest

from daemons.bus import Envelope
from daemons.bus.client import Client
from daemons.core.messages import (
    Done,
    Error,
    FirstToken,
    Handover,
    Infer,
    Placement,
    Progress,
    Reassigned,
    Schedule,
    StatusReply,
    StreamToken,
)
from daemons.loadgen import LoadgenConfig, PlannedRequest, Results, run
from daemons.loadgen.recorder import Recorder
from daemons.loadgen.results import request_row
from daemons.loadgen.sink import Reply, running_sink
from daemons.node.testing import NodeProcess, running_node, wait_until

SMALL = "facebook/opt-125m"
LLAMA2 = "meta-llama/Llama-2-7b-hf"


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
        log = node.log()
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
        request = PlannedRequest(rid, 0.0, SMALL, 4, 2000)  # >= 4 s of decoding on either node
        thread = threading.Thread(target=lambda: out.append(run(config, [request], stop=stop)))
        thread.start()
        cancelled = lambda node: f"cancelling {rid}" in node.log()  # noqa: E731
        try:
            wait_until("the retry runs on the second node", lambda: in_flight(second) == 1)
            os.kill(first.proc.pid, signal.SIGCONT)  # node-a wakes up, finds the request and starts it too
            # The run whose first token reaches the load generator first serves the request; the
            # other is the late duplicate. Usually node-b's, but a loaded host may let node-a's
            # token arrive first: either way exactly one run goes on.
            wait_until("the late duplicate is cancelled", lambda: cancelled(first) or cancelled(second))
            wait_until("both nodes are free again", lambda: in_flight(first) == in_flight(second) == 0, 60)
        finally:
            os.kill(first.proc.pid, signal.SIGCONT)
            thread.join(timeout=120)
            stop.set()
            thread.join(timeout=10)
    winner, name = (second, "node-b") if cancelled(first) else (first, "node-a")
    assert not cancelled(winner), "exactly one of the two runs is cancelled"
    [rec] = out[0].records
    assert (rec.status, rec.node, rec.tokens, rec.attempts) == ("ok", name, 2000, 2), rec
    assert winner.log().count(f"serving {rid} with") == 1
    assert out[0].ignored["duplicate"] >= 1  # the loser's reports, each answered with a Cancel


# ----- verdicts: a node some view declares dead is not waited for (sink-based, seconds) -----------------------


def test_a_node_the_coordinator_declares_dead_is_not_waited_for() -> None:
    """A placed request whose node hangs (no Done, no Progress) is re-placed as soon as the
    coordinator's view says that node is dead, not after the attempt timeout."""
    dead_after = time.monotonic() + 1.0
    schedules: list[list[str]] = []

    def cluster(env: Envelope, endpoint: str) -> list[Reply]:
        body, rid = env.body, env.body.request_id
        if isinstance(body, Schedule):
            schedules.append(list(body.exclude))
            node = "n2" if "n1" in body.exclude else "n1"
            return [(0.0, Placement(rid, node, endpoint, "SERVE", 0.0, "test"))]
        assert isinstance(body, Infer)
        if len(schedules) == 1:
            return [(0.0, FirstToken(rid, "n1", "x"))]  # then n1 hangs
        return [(0.0, FirstToken(rid, "n2", "x")), (0.0, Done(rid, "n2", 4, "length"))]

    def view() -> StatusReply:
        alive = time.monotonic() < dead_after
        return StatusReply("coordinator", [{"node": "n1", "endpoint": "tcp://127.0.0.1:1", "alive": alive},
                                           {"node": "n2", "endpoint": "tcp://127.0.0.1:2", "alive": True}])

    with running_sink(cluster, view=view) as sink:
        config = LoadgenConfig(coordinator=sink.endpoint, attempt_timeout_s=30.0, retries=2, timeout_s=60)
        results = run(config, [PlannedRequest("r1", 0.0, "m", 4, 4)])
    [rec] = results.records
    assert (rec.status, rec.node, rec.attempts, rec.failed_nodes) == ("ok", "n2", 2, ["n1"]), rec
    assert schedules == [[], ["n1"]]
    assert rec.done_s is not None and rec.done_s < 1.0 + 0.5 + 2.0  # the verdict, one view poll, slack; not 30 s


def test_gossip_entry_peers_declared_dead_are_skipped_and_their_requests_retried() -> None:
    """Gossip: a hung entry peer (accepts, never answers) is retried away from as soon as a
    live peer's view says it is dead, and no later request is sent to it."""
    verdict_at = time.monotonic() + 1.0
    hung_endpoint: list[str] = []

    def hung(env: Envelope, endpoint: str) -> list[Reply]:
        return []

    def peer(env: Envelope, endpoint: str) -> list[Reply]:
        rid = env.body.request_id
        return [(0.0, FirstToken(rid, "b", "x")), (0.0, Done(rid, "b", 4, "length", "SERVE", hops=0))]

    def view() -> StatusReply:
        status = "dead" if time.monotonic() >= verdict_at else "alive"
        return StatusReply("gossip-peer", [{"node": "a", "status": status, "endpoint": hung_endpoint[0]},
                                           {"node": "b", "status": "alive", "endpoint": "tcp://127.0.0.1:2"}])

    with running_sink(hung, view=view) as a, running_sink(peer, view=view) as b:
        hung_endpoint.append(a.endpoint)
        schedule = [PlannedRequest(f"r{i:03d}", 0.5 + i * 0.05, "m", 4, 4) for i in range(60)]  # 0.5 .. 3.45 s
        config = LoadgenConfig(mode="gossip", entry=(a.endpoint, b.endpoint), attempt_timeout_s=30.0, retries=2,
                               timeout_s=60)
        results = run(config, schedule)
        to_hung = a.received["infer"]
    assert [r.status for r in results.records] == ["ok"] * len(schedule)
    assert all(r.node == "b" for r in results.records)
    waited = [r for r in results.records if r.attempts > 1]
    assert waited and all(r.scheduled_s < 1.0 + 0.5 for r in waited)  # only those sent before the verdict (+ a poll)
    assert max(r.done_s or 99 for r in results.records) < 3.45 + 2.0  # nobody waited for the 30 s timer
    assert to_hung == len(waited)


# ----- the recorder's rules on their own: one serving node, silence not age ----------------------------------


def _env(body: Any) -> Envelope:
    return Envelope(body.TYPE, "x", body.request_id, body)


def test_recorder_progress_resets_the_silence_timer_and_one_node_serves() -> None:
    rec = Recorder([PlannedRequest("r", 0.0, "m", 4, 4)], timeout_s=600, mode="gossip", retries=2,
                   attempt_timeout_s=3.0)
    [r] = rec.records
    rec.on_sent(r, 0.0, "")
    for t in range(1, 60):  # a minute of decoding, a Progress a second: never retried
        rec.on_reply(_env(Progress("r", "a", tokens=t)), float(t), "tcp://entry-a")
        rec.check_attempts(float(t) + 0.5)
    assert rec.retry_due == [] and r.serving == "a" and r.attempts == 1
    # Another node that reports it is a late duplicate: ignored, and cancelled where it reported.
    rec.on_reply(_env(FirstToken("r", "b", "x")), 60.0, "tcp://entry-b")
    assert rec.cancels == [("r", "b", "tcp://entry-b")] and r.first_token_s is None
    # Its refusal, or the answer to our Cancel, never decides the request.
    rec.on_reply(_env(Error("r", "no_capacity", "full", "b")), 60.1, "tcp://entry-b")
    rec.on_reply(_env(Error("r", "cancelled", "cancelled", "b")), 60.2, "tcp://entry-b")
    assert not r.status and rec.ignored["late"] == 2
    # Silence from the serving node: after attempt_timeout_s, and only then, a retry.
    rec.check_attempts(59.0 + 2.9)
    assert rec.retry_due == []
    rec.check_attempts(59.0 + 3.1)
    assert rec.retry_due == [r] and r.serving == ""
    rec.retry_due.clear()
    rec.on_resent(r, 62.1, "")
    rec.on_reply(_env(Done("r", "c", 4, "length")), 63.0, "tcp://entry-c")
    assert (r.status, r.node, r.tokens) == ("ok", "c", 4)


def test_recorder_a_reassigned_request_takes_the_new_servers_reports() -> None:
    rec = Recorder([PlannedRequest("r", 0.0, "m", 4, 4)], timeout_s=600, mode="gossip", retries=2,
                   attempt_timeout_s=3.0)
    [r] = rec.records
    rec.on_sent(r, 0.0, "")
    rec.on_reply(_env(FirstToken("r", "a", "x")), 0.5, "tcp://entry")
    rec.on_reply(_env(Reassigned("r", "a", "connection dropped")), 1.0, "tcp://entry")
    rec.on_reply(_env(Progress("r", "b", tokens=3)), 1.5, "tcp://entry")
    assert rec.cancels == [] and r.serving == "b" and r.failed_nodes == ["a"] and r.attempts == 1
    # A node the coordinator or a peer declares dead: what it served is retried at once.
    rec.node_gone("b", "tcp://b", 2.0)
    assert rec.retry_due == [r] and "b" in r.failed_nodes


def test_recorder_a_handover_passes_the_request_to_the_migrations_destination() -> None:
    rec = Recorder([PlannedRequest("r", 0.0, "m", 4, 40)], timeout_s=600, mode="centralized", retries=2,
                   attempt_timeout_s=3.0)
    [r] = rec.records
    rec.on_sent(r, 0.0, "")
    rec.on_reply(_env(FirstToken("r", "a", "x")), 0.5, "tcp://a")
    # Only the serving node can hand a request over: another node's Handover changes nothing.
    rec.on_reply(_env(Handover("r", "z", "b", 10)), 0.8, "tcp://z")
    assert r.serving == "a" and rec.ignored["duplicate"] == 1
    rec.on_reply(_env(Handover("r", "a", "b", 12)), 1.0, "tcp://a")
    # The destination's reports (relayed by the source) are the request's, not a duplicate's.
    rec.on_reply(_env(Progress("r", "b", tokens=20)), 1.5, "tcp://a")
    rec.on_reply(_env(StreamToken("r", "b", 21, " w")), 1.6, "tcp://a")
    timings = {"migration_resume_s": 0.05, "migration_gap_s": 0.06}
    rec.on_reply(_env(Done("r", "b", 40, "length", "SERVE", timings=timings)), 2.0, "tcp://a")
    assert rec.cancels == [] and (r.status, r.node, r.tokens) == ("ok", "b", 40)
    row = request_row(r)
    assert (row.migrated_from, row.migrated_to, row.migration_tokens, row.migration_s) == ("a", "b", 12, 1.0)
    assert (row.migration_resume_s, row.migration_gap_s) == (0.05, 0.06) and row.migrated
