"""The coordinator's admission queue through its sockets: hold, place when capacity frees,
refuse `overloaded` when full, answer `queue_timeout` at the deadline, show it in status."""

from __future__ import annotations

import dataclasses
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from daemons.bus.envelope import Envelope
from daemons.coordinator.testing import GIB, Client, CoordinatorProcess, Heartbeat, running_coordinator, schedctl
from daemons.core.messages import (
    CatalogEntry,
    Error,
    GpuState,
    ModelState,
    NodeState,
    Placement,
    Progress,
    Schedule,
)


def crowded(name: str, busy: bool, want: str = "m2", *, memory_gib: int = 24, load_s: float = 5.0) -> NodeState:
    """A node whose GPU holds m1 (16 GiB), running a request or idle: `want` fits only once m1
    is idle. Each test wants its own model, so nodes of earlier tests (not dead yet) never serve it."""
    catalog = ("m1", want)
    m1 = ModelState("m1", "ready", 0, 1 if busy else 0, 16 * GIB, 0.0)
    return NodeState(node=name, endpoint=f"tcp://127.0.0.1:{20000 + abs(hash(name)) % 10000}", gen=1, seq=1,
                     gpus=[GpuState(0, "a10g-24gb", memory_gib * GIB, 16 * GIB)], models=[m1],
                     queue_depth=0, in_flight=1 if busy else 0,
                     catalog=[CatalogEntry(m, 16 * GIB, load_s) for m in catalog])


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    with running_coordinator(tmp_path_factory.mktemp("queue"), dead_after=1.0, queue_limit=2,
                             queue_timeout=3.0) as coord:
        yield coord


def no_answer(client: Client, within_s: float) -> bool:
    """Nothing but "still held" Progress beats arrives within `within_s`."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        if not client.sock.poll(int(left * 1000), zmq.POLLIN):
            return True
        if not isinstance(client.recv(0.1).body, Progress):
            return False
    return True


def answer(client: Client, timeout_s: float) -> Envelope:
    """The next reply that is not a "still held" Progress beat."""
    deadline = time.monotonic() + timeout_s
    while True:
        env = client.recv(max(0.01, deadline - time.monotonic()))
        if not isinstance(env.body, Progress):
            return env


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_held_while_memory_is_busy_then_placed_when_the_model_goes_idle(coordinator: CoordinatorProcess) -> None:
    node = unique("n")
    with Heartbeat(coordinator.state_bind, [crowded(node, busy=True)], interval_s=0.1) as beat, \
            Client(coordinator.bind) as client:
        client.wait_for_nodes({node})
        client.send(Schedule("held-1", "m2", 100, 50), "held-1")
        assert no_answer(client, 0.6), "a request no node can take must wait, not be refused"
        beat_seen = client.recv(3.0)  # the coordinator says it holds it (HELD_BEAT_S), so no one suspects it
        assert isinstance(beat_seen.body, Progress) and (beat_seen.id, beat_seen.body.tokens) == ("held-1", 0)
        info = client.status().info
        assert info["queued"] == 1 and info["queue_by_model"] == {"m2": 1}, info
        beat.set(dataclasses.replace(crowded(node, busy=False), seq=beat.states[node].seq + 1))
        env = answer(client, 5.0)
        assert isinstance(env.body, Placement), env.body
        assert (env.id, env.body.node, env.body.action) == ("held-1", node, "COLD_START")
        assert client.status().info["queued"] == 0


def test_full_queue_refuses_overloaded_and_the_deadline_answers_queue_timeout(
        coordinator: CoordinatorProcess) -> None:
    node = unique("n")
    with Heartbeat(coordinator.state_bind, [crowded(node, busy=True, want="m3")], interval_s=0.1), \
            Client(coordinator.bind) as client:
        client.wait_for_nodes({node})
        sent = time.monotonic()
        for i in range(3):  # queue_limit is 2
            client.send(Schedule(f"full-{i}", "m3", 100, 50), f"full-{i}")
        first = answer(client, 2.0)
        assert first.id == "full-2" and isinstance(first.body, Error) and first.body.code == "overloaded"
        assert "queue_limit 2" in first.body.message
        late = [answer(client, 6.0) for _ in range(2)]
        waited = time.monotonic() - sent
        assert [e.id for e in late] == ["full-0", "full-1"]  # in arrival order
        assert all(isinstance(e.body, Error) and e.body.code == "queue_timeout" for e in late)
        assert 2.5 < waited < 6.0, waited  # queue_timeout 3 s


def test_an_answer_to_an_asker_gone_meanwhile_is_logged_and_the_next_one_still_sent(
        coordinator: CoordinatorProcess) -> None:
    # Answers leave at the end of a round (server.py, _flush): one that cannot be delivered
    # (ROUTER_MANDATORY: its asker is gone) is logged, and the others of the round still go.
    node = unique("n")
    with Heartbeat(coordinator.state_bind, [crowded(node, busy=True, want="m5")], interval_s=0.1) as beat:
        with Client(coordinator.bind) as gone:
            gone.wait_for_nodes({node})
            gone.send(Schedule("gone-1", "m5", 100, 50), "gone-1")
            assert no_answer(gone, 0.3)
        with Client(coordinator.bind) as client:
            beat.set(dataclasses.replace(crowded(node, busy=False, want="m5"), seq=beat.states[node].seq + 1))
            deadline = time.monotonic() + 5
            while "could not answer gone-1 with placement" not in coordinator.log():
                assert time.monotonic() < deadline, "the undeliverable answer was not logged"
                time.sleep(0.05)
            env = client.schedule("after-gone", "m1")
            assert isinstance(env.body, Placement) and env.id == "after-gone"


def test_a_schedule_asked_again_while_held_is_answered_once(coordinator: CoordinatorProcess) -> None:
    node = unique("n")
    with Heartbeat(coordinator.state_bind, [crowded(node, busy=True, want="m4")], interval_s=0.1) as beat, \
            Client(coordinator.bind) as client:
        client.wait_for_nodes({node})
        for _ in range(3):  # the load generator asks again after coordinator_timeout_s
            client.send(Schedule("again-1", "m4", 100, 50), "again-1")
        assert no_answer(client, 0.4)
        assert client.status().info["queued"] == 1
        beat.set(dataclasses.replace(crowded(node, busy=False, want="m4"), seq=beat.states[node].seq + 1))
        assert isinstance(answer(client, 5.0).body, Placement)
        assert no_answer(client, 0.5), "one placement per request, however often it was asked"


@pytest.mark.parametrize("live", [False, True])
def test_migrate_makes_room_by_live_migration_or_is_replaced(tmp_path: Path, live: bool) -> None:
    # startup-optimal picks MIGRATE on `near` (loads m2 in 1 s, but m1 is busy there) over a
    # 30 s cold start on `far`. With live migration the request goes to `near` and near is told
    # to move its m1 request to `far` (m1 is ready there); without, the request goes to `far` now.
    near, far = unique("near"), unique("far")
    states = [crowded(near, busy=True, load_s=1.0),
              dataclasses.replace(crowded(far, busy=True, memory_gib=80, load_s=30.0), node=far,
                                  endpoint="tcp://127.0.0.1:29999")]
    flags = () if live else ("--no-live-migration",)
    with running_coordinator(tmp_path, *flags, policy="startup-optimal") as coord, \
            Heartbeat(coord.state_bind, states, interval_s=0.1), Client(coord.bind) as client:
        client.wait_for_nodes({near, far})
        placed = client.schedule("mig-1", "m2").body
        assert isinstance(placed, Placement), placed
        if live:
            assert (placed.node, placed.action) == (near, "MIGRATE")
            assert f"MIGRATE on {near}: moving 1 running request(s) of m1 off it" in coord.log()
        else:
            assert (placed.node, placed.action) == (far, "COLD_START")
            assert f"MIGRATE to {near} needs live migration" in placed.reason


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_queue_limit_below_one_is_one_clear_error_line(value: str) -> None:
    out = subprocess.run([schedctl(), "start", "coordinator", "--queue-limit", value], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "queue_limit" in lines[0], out.stderr
    assert f"got {value}" in lines[0] and "set queue_limit = 64" in lines[0]
