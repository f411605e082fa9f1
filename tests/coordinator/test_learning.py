"""Learned affinity and predictive pre-warming, end to end: a real coordinator, real node
agents with their emulator instances, real sockets on loopback.

- on a two-speed cluster (an A100 and an A10G serving the same 7B model), `--affinity
  learned` steers the model to the faster node once each node has measured itself;
- a ramp of arrivals that has not yet exceeded its holder's capacity makes the Holt
  forecast cross it, so the coordinator pre-warms the model on the idle node before the
  burst's first request arrives; the node publishes the `prewarm` event and the burst's
  requests are served there warm.

The pure rules are tested in tests/policy/test_learning.py.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from daemons.bus import parse_frame
from daemons.coordinator.testing import Client, running_coordinator, schedctl
from daemons.core.messages import ClusterEvent, Done, Infer, NodeState, Placement
from daemons.node.testing import running_node, wait_until

SMALL = "facebook/opt-125m"
BIG = "meta-llama/Llama-2-7b-hf"  # prefill of 500 tokens: ~0.04 s on an A100, ~0.11 s on an A10G (profiles)


def _serve(client: Client, rid: str, model: str) -> Placement:
    placement = client.schedule(rid, model).body
    assert isinstance(placement, Placement), placement
    with Client(placement.endpoint) as to_node:
        to_node.send(Infer(rid, model, "hello " * 500, 2, placement.action), rid)
        for _ in range(20):
            if isinstance(to_node.recv(60).body, Done):
                return placement
    raise AssertionError(f"{rid}: no done")


@pytest.mark.timeout(120)
def test_learned_affinity_steers_the_model_to_the_faster_node(tmp_path: Path) -> None:
    with running_coordinator(tmp_path, policy="startup-optimal", affinity="learned") as coord, \
            running_node(tmp_path, "fast", gpu="a100-80gb", models=[BIG], preload=[BIG], checkpoint_tier="gpu",
                         publish_to=[coord.state_bind], publish_interval_s=0.2), \
            running_node(tmp_path, "slow", gpu="a10g-24gb", models=[BIG], preload=[BIG], checkpoint_tier="gpu",
                         publish_to=[coord.state_bind], publish_interval_s=0.2), \
            Client(coord.bind) as client:
        client.wait_for_nodes({"fast", "slow"}, timeout_s=20)
        wait_until("both nodes hold the model ready", lambda: _ready_on(client, BIG) == {"fast", "slow"})
        chosen = []
        for i in range(14):
            placement = _serve(client, f"learn-{i}", BIG)
            chosen.append(placement.node)
            # Until the node's next state (its new estimate) has settled our placement there: a
            # placement counts as pending load until a state newer than settle_s shows it.
            time.sleep(0.4)
        assert "learned affinity" in placement.reason, placement.reason
        assert chosen[-6:] == ["fast"] * 6, chosen


def _ready_on(client: Client, model: str) -> set[str]:
    return {row["node"] for row in client.status().nodes
            if any(m["model"] == model and m["state"] == "ready" for m in row["models"])}


def _held_on(client: Client, node: str, model: str) -> bool:
    return any(row["node"] == node and any(m["model"] == model for m in row["models"])
               for row in client.status().nodes)


@pytest.fixture
def events() -> Iterator[tuple[str, zmq.Socket[bytes]]]:
    """A SUB a node publishes to (like the experiment's collector): its events arrive here."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield f"tcp://127.0.0.1:{port}", sub
    finally:
        sub.close(0)
        ctx.term()


class Heard:
    """What a node's PUB said to our SUB: the nodes whose state arrived, the prewarm events' details."""

    def __init__(self, sub: zmq.Socket[bytes]) -> None:
        self.sub, self.states, self.prewarms = sub, set[str](), list[str]()

    def drain(self) -> None:
        while self.sub.poll(0):
            env = parse_frame(self.sub.recv(), "node")
            if env is not None and isinstance(env.body, NodeState):
                self.states.add(env.body.node)
            elif env is not None and isinstance(env.body, ClusterEvent) and env.body.kind == "prewarm":
                self.prewarms.append(env.body.detail)

    def wait_connected(self, node: str) -> None:
        """Until a state of `node` arrived: a PUB drops what it sends before the link is up."""
        wait_until(f"{node}'s PUB reaches us", lambda: self.drain() or node in self.states, timeout_s=10)

    def wait_prewarm(self) -> str:
        wait_until("a prewarm event", lambda: self.drain() or bool(self.prewarms), timeout_s=5)
        return self.prewarms[0]


@pytest.mark.timeout(90)
def test_a_burst_forecast_prewarms_the_model_before_the_bursts_first_request(
        tmp_path: Path, events: tuple[str, zmq.Socket[bytes]]) -> None:
    address, sub = events
    with running_coordinator(tmp_path, prewarm="on", forecast_horizon=5, prewarm_instance_rps=2) as coord, \
            running_node(tmp_path, "node-0", models=[SMALL], preload=[SMALL], checkpoint_tier="gpu",
                         publish_to=[coord.state_bind]), \
            running_node(tmp_path, "node-1", models=[SMALL], checkpoint_tier="gpu",
                         publish_to=[coord.state_bind, address]), \
            Client(coord.bind) as client:
        client.wait_for_nodes({"node-0", "node-1"}, timeout_s=20)
        wait_until("node-0 holds the model", lambda: _ready_on(client, SMALL) == {"node-0"})
        heard = Heard(sub)
        heard.wait_connected("node-1")
        # The ramp: 1, 2, 2 requests a second, never more than node-0's capacity (2 req/s)...
        rid = 0
        for second in (1, 2, 2):
            start = time.monotonic()
            for _ in range(second):
                assert isinstance(client.schedule(f"ramp-{rid}", SMALL).body, Placement)
                rid += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
        # ...yet its trend, extrapolated over the horizon, exceeds it: node-1 is loading it now.
        wait_until("the model pre-warmed on node-1", lambda: _held_on(client, "node-1", SMALL), timeout_s=3)
        detail = heard.wait_prewarm()
        assert detail.startswith(f"by=node-1;model={SMALL};") and "ordered_by=coordinator" in detail, detail
        assert "forecast_rps=" in detail and "capacity_rps=2.000" in detail, detail
        # The burst: its requests find the model ready on node-1 too (no cold start on their path).
        wait_until("node-1 ready", lambda: "node-1" in _ready_on(client, SMALL), timeout_s=10)
        burst = [client.schedule(f"burst-{i}", SMALL).body for i in range(8)]
        assert all(isinstance(p, Placement) for p in burst), burst
        assert any(p.node == "node-1" and p.action == "SERVE" for p in burst if isinstance(p, Placement)), burst


@pytest.mark.parametrize("args,message", [
    (["start", "coordinator", "--policy", "round-robin", "--affinity", "learned"],
     "policy 'round-robin' cannot use --affinity learned"),
    (["start", "coordinator", "--prewarm", "on", "--forecast-alpha", "1.5"],
     "forecast_alpha 1.5 is out of range: use 0 < forecast_alpha <= 1"),
    (["experiment", "run", "--scheduler", "centralized", "--policy", "least-loaded", "--affinity", "learned"],
     "policy 'least-loaded' cannot use --affinity learned"),
])
def test_bad_learning_settings_are_one_clear_error_line(args: list[str], message: str) -> None:
    out = subprocess.run([schedctl(), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr, out.stderr
