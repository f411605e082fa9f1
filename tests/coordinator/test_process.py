"""The real `schedctl start coordinator` process, fed by real PUB sockets, asked by a DEALER."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from daemons.bus import encode, make_socket
from daemons.bus.envelope import MAX_FRAME_BYTES
from daemons.coordinator.testing import (
    Client,
    CoordinatorProcess,
    Heartbeat,
    StatePublisher,
    free_endpoint,
    node_state,
    running_coordinator,
    schedctl,
)
from daemons.core.messages import ClusterEvent, Error, Placement, Schedule, StatusRequest
from daemons.core.schema import to_dict


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{uuid.uuid4().hex[:4]}-{i}" for i in range(n)]


@contextlib.contextmanager
def cluster(coord: CoordinatorProcess, client: Client, states: list[Any]) -> Iterator[Heartbeat]:
    """Nodes alive for the duration of a test, and dead before the next one starts, so
    tests sharing the coordinator do not see each other's nodes."""
    with Heartbeat(coord.state_bind, states) as beat:
        client.wait_for_nodes({s.node for s in states})
        yield beat
    ours = {s.node for s in states}
    deadline = time.monotonic() + 5
    while any(r["alive"] for r in client.status().nodes if r["node"] in ours):
        assert time.monotonic() < deadline, "nodes still alive 5 s after their heartbeats stopped"
        time.sleep(0.05)


@contextlib.contextmanager
def events(coord: CoordinatorProcess) -> Iterator[Any]:
    ctx: zmq.Context[Any] = zmq.Context()
    sub = make_socket(ctx, zmq.SUB)
    sub.connect(coord.events_bind)
    try:
        yield sub
    finally:
        sub.close(0)
        ctx.term()


def wait_event(sub: Any, kind: str, node: str, timeout_s: float = 5.0) -> ClusterEvent:
    from daemons.bus import decode

    deadline = time.monotonic() + timeout_s
    while sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        body = decode(sub.recv()).body
        if isinstance(body, ClusterEvent) and (body.kind, body.node) == (kind, node):
            return body
    raise TimeoutError(f"no {kind} event for {node}")


def test_serves_on_the_holder_and_answers_with_the_request_id(coordinator: CoordinatorProcess,
                                                              client: Client) -> None:
    a, b = names("serve", 2)
    with cluster(coordinator, client, [node_state(a), node_state(b, ready=["m1"])]):
        env = client.schedule("r-1", "m1")
        assert env.id == "r-1" and env.sender == "coordinator"
        p = env.body
        assert isinstance(p, Placement)
        assert (p.request_id, p.node, p.action) == ("r-1", b, "SERVE")
        assert p.endpoint == node_state(b).endpoint and 0 < p.decision_s < 0.05


def test_a_burst_spreads_over_holders_with_stale_state(coordinator: CoordinatorProcess, client: Client) -> None:
    nodes = names("burst", 4)
    with cluster(coordinator, client, [node_state(n, ready=["m2"], catalog=["m2"]) for n in nodes]) as beat:
        beat.close()  # state goes stale: only the coordinator's own accounting moves
        for i in range(40):
            client.send(Schedule(f"b-{i}", "m2", 100, 50), f"b-{i}")
        counts = Counter(env.body.node for env in (client.recv() for _ in range(40))
                         if isinstance(env.body, Placement))
    assert set(counts) == set(nodes) and max(counts.values()) <= 11, counts


def test_unknown_model_and_no_nodes(coordinator: CoordinatorProcess, client: Client) -> None:
    (a,) = names("err", 1)
    with cluster(coordinator, client, [node_state(a, catalog=["m1"], memory_gib=8)]):
        unknown = client.schedule("u-1", "nonexistent-model").body
        assert isinstance(unknown, Error) and unknown.code == "unknown_model"
        assert "'nonexistent-model'" in unknown.message
        full = client.schedule("u-2", "m1").body  # 16 GiB model, 8 GiB GPU
        assert isinstance(full, Error) and full.code == "no_nodes" and "'m1'" in full.message


def test_exclude_is_honoured(coordinator: CoordinatorProcess, client: Client) -> None:
    a, b = names("excl", 2)
    with cluster(coordinator, client, [node_state(a, ready=["m1"]), node_state(b, ready=["m1"])]):
        for i in range(10):
            env = client.schedule(f"x-{i}", "m1", exclude=[a])
            assert isinstance(env.body, Placement) and env.body.node == b
        env = client.schedule("x-all", "m1", exclude=[a, b])
        assert isinstance(env.body, Error) and env.body.code == "no_nodes"
        assert "2 excluded" in env.body.message


def test_dead_node_detected_after_missed_heartbeats(coordinator: CoordinatorProcess, client: Client) -> None:
    a, b = names("dead", 2)
    with events(coordinator) as sub, \
            cluster(coordinator, client, [node_state(a, ready=["m3"]), node_state(b, catalog=["m3"])]) as beat:
        beat.stop_beating(a)
        silenced = time.monotonic()
        event = wait_event(sub, "node_dead", a)
        assert 0.5 < time.monotonic() - silenced < 2.0
        assert "silent for" in event.detail and event.ts > 0
        rows = {r["node"]: r for r in client.status().nodes}
        assert rows[a]["alive"] is False and rows[b]["alive"] is True
        for i in range(5):
            p = client.schedule(f"d-{i}", "m3").body
            assert isinstance(p, Placement) and p.node != a
        beat.set(node_state(a, seq=10_000, ready=["m3"]))
        wait_event(sub, "node_recovered", a)


def test_restart_with_a_new_gen(coordinator: CoordinatorProcess, client: Client) -> None:
    (a,) = names("restart", 1)
    with events(coordinator) as sub, cluster(coordinator, client, [node_state(a, gen=111)]) as beat:
        beat.set(node_state(a, gen=222, ready=["m1"]))
        event = wait_event(sub, "node_restarted", a)
        assert event.detail == "gen 111 -> 222"
        with StatePublisher(coordinator.state_bind) as ghost:  # a late frame from the old life
            for _ in range(5):
                ghost.publish(node_state(a, gen=111, seq=10**9))
                time.sleep(0.05)
        (row,) = [r for r in client.status().nodes if r["node"] == a]
        assert row["gen"] == 222 and row["models"][0]["model"] == "m1"


def hostile_frames() -> list[tuple[str, list[bytes]]]:
    sched = to_dict(Schedule("h", "m1", 1, 1))
    good = encode(Schedule("h", "m1", 1, 1), "x", "h")
    return [
        ("random bytes", [os.urandom(64)]),
        ("not an envelope", [msgpack.packb({"hello": "world"})]),
        ("wrong type on the request socket", [encode(node_state("ghost"), "ghost")]),
        ("unknown message type", [msgpack.packb([1, "launch_missiles", "x", "y", {}])]),
        ("bad field type", [msgpack.packb([1, "schedule", "x", "y", {**sched, "prompt_tokens": "many"}])]),
        ("truncated", [good[:-5]]),
        ("unknown version", [msgpack.packb([99, "schedule", "x", "y", sched])]),
        ("too many frames", [good, good]),
        ("empty", [b""]),
        ("ext type", [msgpack.packb([1, "schedule", "x", "y", msgpack.ExtType(1, b"pickle")])]),
    ]


def test_hostile_frames_are_dropped_and_the_coordinator_keeps_answering(
        coordinator: CoordinatorProcess, client: Client) -> None:
    (a,) = names("hostile", 1)
    with cluster(coordinator, client, [node_state(a, ready=["m1"])]):
        before = coordinator.log().count("dropped")
        for what, frames in hostile_frames():
            client.send_raw(frames)
            p = client.schedule(f"after {what}", "m1").body
            assert isinstance(p, Placement), what
        with StatePublisher(coordinator.state_bind) as pub:  # and on the state socket
            (probe,) = names("probe", 1)
            seq = iter(range(1, 10**6))
            client.wait_for_nodes({probe}, publish=lambda: pub.publish(node_state(probe, seq=next(seq))))
            for frames in ([os.urandom(32)], [encode(Schedule("h", "m1", 1, 1), "x")],
                           [encode(node_state(a), a), b"extra"]):
                pub.send_raw(frames)
        with Client(coordinator.bind) as big:  # over MAXMSGSIZE: the peer is cut off
            big.send_raw([b"\x00" * (MAX_FRAME_BYTES + 1024)])
        time.sleep(0.2)
        assert isinstance(client.schedule("after all", "m1").body, Placement)
        assert coordinator.proc.poll() is None
        log = coordinator.log()
        assert log.count("dropped") >= before + len(hostile_frames()) + 3
        assert "dropped 'schedule' from 'x' on the state socket" in log
        assert "state message with 2 frames" in log


def test_a_changed_catalog_is_seen_and_a_malformed_one_dropped(coordinator: CoordinatorProcess,
                                                               client: Client) -> None:
    # The decoder recognises a catalog it has validated before (schema.Memo): a new one must
    # still be read, and a bad one refused, from a node whose earlier catalog was accepted.
    (a,) = names("catalog", 1)
    old, new = f"{a}-old", f"{a}-new"
    seq = iter(range(1, 10**6))
    with StatePublisher(coordinator.state_bind) as pub:
        client.wait_for_nodes({a}, publish=lambda: pub.publish(node_state(a, seq=next(seq), catalog=[old])))
        refused = client.schedule(f"{a}-r1", new).body
        assert isinstance(refused, Error) and refused.code == "unknown_model"
        bad = to_dict(node_state(a, seq=next(seq), catalog=[old, new]))
        bad["catalog"][1]["load_s"] = -1.0  # below its bound: the whole state is refused
        before = next(r["seq"] for r in client.status().nodes if r["node"] == a)
        pub.send_raw([msgpack.packb([1, "state", a, "", bad], use_bin_type=True)])
        deadline = time.monotonic() + 5
        while "catalog[1].load_s" not in coordinator.log():
            assert time.monotonic() < deadline, "the malformed state was not logged"
            time.sleep(0.05)
        row = next(r for r in client.status().nodes if r["node"] == a)
        assert row["seq"] == before and isinstance(client.schedule(f"{a}-r2", old).body, Placement)
        pub.publish(node_state(a, seq=next(seq), catalog=[old, new]))
        deadline = time.monotonic() + 5
        while not isinstance(placed := client.schedule(f"{a}-r{next(seq)}", new).body, Placement):
            assert time.monotonic() < deadline, f"the new catalog was not taken: {placed}"
            time.sleep(0.05)
        assert (placed.node, placed.action) == (a, "COLD_START")


def test_status_command_prints_the_table(coordinator: CoordinatorProcess, client: Client) -> None:
    a, b = names("table", 2)
    with cluster(coordinator, client, [node_state(a, ready=["m1"]), node_state(b)]) as beat:
        beat.stop_beating(b)
        deadline = time.monotonic() + 5
        while any(r["alive"] for r in client.status().nodes if r["node"] == b):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        out = subprocess.run([schedctl(), "status", "--coordinator", coordinator.bind],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "STATE", "QUEUE"]
    row_a = next(line for line in lines if line.startswith(a))
    assert "alive" in row_a and "16.0/80.0 GiB" in row_a and "m1 ready q0 r0" in row_a
    assert "DEAD" in next(line for line in lines if line.startswith(b))
    assert "alive (as seen by the coordinator)" in lines[-1]
    assert lines[-2].startswith("queue: 0 waiting for capacity, limit 64 per model")


def test_status_with_nobody_listening_is_one_clear_line() -> None:
    address = free_endpoint()
    out = subprocess.run([schedctl(), "status", "--coordinator", address, "--timeout", "0.3"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"error: no coordinator answered at {address} within 0.3s: is it running? "
                                  "start it with `schedctl start coordinator` (a cluster with CURVE answers only "
                                  "with keys: pass --keys DIR or --cluster FILE)")


def test_status_request_with_a_status_id(coordinator: CoordinatorProcess, client: Client) -> None:
    client.send(StatusRequest(), "my-id")
    env = client.recv()
    assert env.id == "my-id" and env.type == "status"


def run_start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([schedctl(), "start", "coordinator", *args], capture_output=True, text=True,
                          timeout=30)


def test_port_in_use_is_one_line_naming_the_fix(coordinator: CoordinatorProcess) -> None:
    out = run_start("--bind", coordinator.bind, "--state-bind", free_endpoint(),
                    "--events-bind", free_endpoint())
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0] == (f"error: cannot bind the request ROUTER socket to {coordinator.bind}: address "
                        "already in use (another coordinator?): stop that process or pass --bind with a "
                        "free address")


def test_unknown_policy_is_one_line_naming_the_choices() -> None:
    out = run_start("--policy", "fastest")
    assert out.returncode == 2 and out.stderr.strip() == (
        "error: unknown policy 'fastest' for the centralized coordinator: choose one of affinity-score, "
        "least-loaded, random, round-robin, startup-optimal")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signals_stop_it_cleanly(sig: str) -> None:
    import signal

    with running_coordinator() as coord:
        coord.proc.send_signal(getattr(signal, sig))
        assert coord.proc.wait(10) == 0
        assert "coordinator stopping" in coord.log()


def test_a_flood_of_requests_does_not_make_live_nodes_look_dead() -> None:
    # 50 nodes with 20-model catalogs beating at 20 Hz: ~1000 state frames/s, each costly to
    # decode, while requests arrive as fast as the coordinator can answer them.
    nodes = names("flood", 50)
    catalog = [f"m{i}" for i in range(1, 21)]
    frames = [encode(Schedule(f"f-{i}", "m1", 100, 10), "flood", f"f-{i}") for i in range(20_000)]
    states = [node_state(n, ready=["m1"], catalog=catalog) for n in nodes]
    with running_coordinator(dead_after=1.0) as coord, Client(coord.bind) as client, \
            Heartbeat(coord.state_bind, states, interval_s=0.05):
        client.wait_for_nodes(set(nodes))
        answered, sent, window = 0, 0, 64
        deadline = time.monotonic() + 60
        while answered < len(frames) and time.monotonic() < deadline:
            while sent < len(frames) and sent - answered < window:
                client.sock.send(frames[sent])
                sent += 1
            if client.sock.poll(1000):
                client.sock.recv()
                answered += 1
        assert answered == len(frames)
        assert all(r["alive"] for r in client.status().nodes)
        assert "node_dead" not in coord.log()
