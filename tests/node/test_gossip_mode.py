"""Nodes in gossip mode: real peers on loopback that place, forward and relay requests."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from daemons.bus import make_socket, parse_frame
from daemons.bus.security import Security, SecurityConfig
from daemons.core.messages import ClusterEvent, Done, Infer
from daemons.node.testing import Client, NodeProcess, free_endpoint, running_node

SMALL = "facebook/opt-125m"
LLAMA3 = "meta-llama/Llama-3.1-8B-Instruct"


@contextlib.contextmanager
def peers(tmp: Path, count: int, policy: str, **fields: object) -> Iterator[list[NodeProcess]]:
    gossip = [free_endpoint() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(running_node(
            tmp, f"node-{i}", scheduler="gossip", gossip_bind=gossip[i], seeds=[gossip[0]] if i else [],
            gossip_preset="ci", gossip_policy=policy, **fields)) for i in range(count)]
        wait_converged(nodes[0], count)
        yield nodes


def wait_converged(node: NodeProcess, count: int, timeout_s: float = 20) -> list[dict[str, object]]:
    client = Client(node.bind)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = client.status().nodes
            if sum(1 for r in rows if r["alive"] and r.get("endpoint")) == count:
                return rows
            time.sleep(0.1)
        raise AssertionError(f"gossip did not converge: {rows}")
    finally:
        client.close()


def run(client: Client, rid: str, model: str = SMALL, action: str = "") -> list[object]:
    """action "" lets the peer place the request; an explicit action makes it serve here."""
    client.send(Infer(rid, model, "a b c d", 4, action=action), rid)
    return [e.body for e in client.until({"done", "error"}, timeout_s=60)]


@pytest.mark.parametrize("policy", ["local-first", "power-of-d", "sparrow"])
def test_a_peer_forwards_to_the_holder_and_relays_the_answer(tmp_path: Path, policy: str) -> None:
    with peers(tmp_path, 3, policy, models=[SMALL, LLAMA3], checkpoint_tier="gpu") as nodes:
        holder = Client(nodes[2].bind)
        first = run(holder, "load", action="COLD_START")[-1]
        assert first.node == "node-2" and first.action == "COLD_START"  # type: ignore[attr-defined]
        holder.close()
        wait_for_model(nodes[0], "node-2", SMALL)
        entry = Client(nodes[0].bind)
        done = run(entry, "fwd")[-1]
        # the model is ready only on node-2: every policy sends a warm request there
        assert (done.node, done.action, done.hops) == ("node-2", "SERVE", 1), done  # type: ignore[attr-defined]
        entry.close()


def wait_for_model(node: NodeProcess, holder: str, model: str, timeout_s: float = 10) -> None:
    client = Client(node.bind)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for row in client.status().nodes:
                if row["node"] == holder and any(m["model"] == model and m["state"] == "ready"
                                                 for m in row.get("models", [])):  # type: ignore[union-attr]
                    assert row["record_age_s"] is not None
                    return
            time.sleep(0.1)
        raise AssertionError(f"{node.bind} never learned that {holder} holds {model}")
    finally:
        client.close()


def test_zero_hops_means_serve_here(tmp_path: Path) -> None:
    with peers(tmp_path, 2, "power-of-d", models=[SMALL], checkpoint_tier="gpu", max_hops=0) as nodes:
        client = Client(nodes[1].bind)
        done = run(client, "r")[-1]
        assert (done.node, done.hops) == ("node-1", 0)  # type: ignore[attr-defined]
        client.close()


class Verdicts:
    """A SUB where the peers publish, read all along (as the experiment's collector does, so
    the peers' NodeState stream never fills it up): keeps their ClusterEvents."""

    def __init__(self) -> None:
        self.address = free_endpoint()
        self.events: list[ClusterEvent] = []
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        sub = make_socket(self._ctx, zmq.SUB)
        sub.bind(self.address)
        self._thread = threading.Thread(target=self._read, args=(sub,), daemon=True)
        self._thread.start()

    def _read(self, sub: zmq.Socket[bytes]) -> None:
        while not self._stop.is_set():
            if sub.poll(50):
                env = parse_frame(sub.recv(), "peer")
                if env is not None and isinstance(env.body, ClusterEvent):
                    self.events.append(env.body)
        sub.close(0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.term()

    def until(self, done: Callable[[list[ClusterEvent]], bool], timeout_s: float = 15) -> list[ClusterEvent]:
        deadline = time.monotonic() + timeout_s
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"verdicts so far: {self.events}")
            time.sleep(0.05)
        return self.events

    def about(self, node: str, kind: str) -> set[str]:
        """The observers (by=) that reported `kind` about `node`."""
        return {by_of(e) for e in self.events if e.node == node and e.kind == kind}


def by_of(event: ClusterEvent) -> str:
    return event.detail.split(";")[0].removeprefix("by=")


@pytest.fixture
def verdicts() -> Iterator[Verdicts]:
    sink = Verdicts()
    yield sink
    sink.close()


def streaming_through(nodes: list[NodeProcess]) -> Client:
    """A long request sent to node-0, forwarded to node-2 (the only holder of the model) and
    streaming from there; the client that waits for its end."""
    holder = Client(nodes[2].bind)
    run(holder, "load", action="COLD_START")
    holder.close()
    wait_for_model(nodes[0], "node-2", SMALL)
    entry = Client(nodes[0].bind)
    entry.send(Infer("long", SMALL, "x", 2000, action=""), "long")
    first = entry.recv(30)
    assert first.type == "first_token" and first.body.node == "node-2"
    return entry


def test_a_hung_peer_fails_forwarded_requests_once_declared_dead(tmp_path: Path, verdicts: Verdicts) -> None:
    """SIGSTOP keeps the connection open: only gossip can tell, and the entry fails the
    request with `peer_dead` at the DEAD verdict instead of hanging."""
    with peers(tmp_path, 3, "power-of-d", models=[SMALL], checkpoint_tier="gpu",
               publish_to=[verdicts.address]) as nodes:
        entry = streaming_through(nodes)
        nodes[2].proc.send_signal(signal.SIGSTOP)
        try:
            err = entry.until({"done", "error"}, timeout_s=30)[-1].body
            assert err.code == "peer_dead" and "node-2" in err.message  # type: ignore[union-attr]
            # Each survivor publishes its own verdicts about the hung peer, and only about it.
            verdicts.until(lambda _: verdicts.about("node-2", "dead") == {"node-0", "node-1"})
        finally:
            nodes[2].proc.send_signal(signal.SIGCONT)
        entry.close()
        assert verdicts.about("node-2", "suspect") == {"node-0", "node-1"}
        assert not [e for e in verdicts.events if e.node != "node-2"], verdicts.events


def test_a_killed_peers_forwarded_requests_are_placed_again_at_once(tmp_path: Path, verdicts: Verdicts) -> None:
    """kill -9 closes the peer's connections: the entry places what it forwarded there on
    another peer without waiting for gossip to suspect it."""
    with peers(tmp_path, 3, "power-of-d", models=[SMALL], checkpoint_tier="gpu",
               publish_to=[verdicts.address]) as nodes:
        entry = streaming_through(nodes)
        nodes[2].proc.kill()
        done = entry.until({"done", "error"}, timeout_s=30)[-1].body
        entry.close()
        assert isinstance(done, Done) and done.node in ("node-0", "node-1"), done
        assert "connection to node-2 dropped: placing long again" in nodes[0].log_path.read_text()


def test_a_paused_peer_is_suspected_then_reported_alive_again(tmp_path: Path, verdicts: Verdicts) -> None:
    """SIGSTOP past the CI preset's suspicion timeout (0.4 s at N = 2), then SIGCONT: the
    peer refutes its death with a higher incarnation and its observer says `alive`."""
    with peers(tmp_path, 2, "power-of-d", models=[SMALL], publish_to=[verdicts.address]) as nodes:
        nodes[1].proc.send_signal(signal.SIGSTOP)
        try:
            verdicts.until(lambda _: verdicts.about("node-1", "dead") == {"node-0"})
        finally:
            nodes[1].proc.send_signal(signal.SIGCONT)
        verdicts.until(lambda _: verdicts.about("node-1", "alive") == {"node-0"})
        # the first three; a just-resumed peer may be suspected again, which is fine
        suspect, dead, alive = [e for e in verdicts.events if e.node == "node-1"][:3]
        assert [suspect.kind, dead.kind, alive.kind] == ["suspect", "dead", "alive"], verdicts.events
        assert suspect.detail == f"by=node-0;incarnation={incarnation(suspect)};accuser=node-0"
        assert incarnation(alive) > incarnation(dead)  # a refutation, not a restart


def incarnation(event: ClusterEvent) -> int:
    return int(event.detail.partition("incarnation=")[2].partition(";")[0])


def test_gossip_and_forwarding_run_over_curve(tmp_path: Path) -> None:
    """With [security], peers gossip and forward over CURVE, and the ZAP handler admits them, each
    key as its own identity (a node's key named after the node, daemons/bus/authz.py)."""
    import shutil
    import subprocess

    import tomli_w

    from daemons.node.testing import schedctl

    keys = tmp_path / "keys"
    generate = [schedctl(), "keys", "generate", "--dir", str(keys)]
    subprocess.run([*generate, "--name", "server"], check=True, capture_output=True, timeout=60)
    subprocess.run([*generate, "--role", "node", "--name", "node-0", "--name", "node-1"], check=True,
                   capture_output=True, timeout=60)
    subprocess.run([*generate, "--role", "loadgen,operator", "--name", "client"], check=True,
                   capture_output=True, timeout=60)
    (keys / "allowed").mkdir()
    for name in ("node-0", "node-1", "client"):
        shutil.copy(keys / f"{name}.key", keys / "allowed" / f"{name}.key")
    security = {"curve_dir": str(keys), "server_key": "server", "client_key": "client",
                "allowed_keys_dir": str(keys / "allowed")}
    gossip = [free_endpoint(), free_endpoint()]
    binds = [free_endpoint(), free_endpoint()]
    with contextlib.ExitStack() as stack:
        nodes = []
        for i in range(2):
            config = tmp_path / f"node-{i}.toml"
            config.write_text(tomli_w.dumps({"security": {**security, "client_key": f"node-{i}"}, "node": {
                "name": f"node-{i}", "bind": binds[i], "publish_to": [], "gpu_backend": "emulated",
                "models": [SMALL], "checkpoint_tier": "gpu", "init_s": 0.2, "scheduler": "gossip",
                "gossip_bind": gossip[i], "seeds": [gossip[0]] if i else [], "gossip_preset": "ci"}}))
            node = NodeProcess(config, binds[i], tmp_path / f"node-{i}.log")
            stack.callback(node.stop)
            nodes.append(node)
        curve = Security(SecurityConfig(**security)).client
        for node in nodes:
            wait_curve_ready(node, curve)
        with Client(binds[1], curve=curve) as holder:
            holder.send(Infer("load", SMALL, "a b", 4, action="COLD_START"), "load")
            assert holder.until({"done", "error"}, timeout_s=60)[-1].type == "done"
        with Client(binds[0], curve=curve) as entry:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until node-0 learns by gossip that node-1 holds the model
                rows = entry.status().nodes
                if any(r["node"] == "node-1" and r.get("models") for r in rows):
                    break
                time.sleep(0.1)
            entry.send(Infer("fwd", SMALL, "a b", 4, action=""), "fwd")
            done = entry.until({"done", "error"}, timeout_s=60)[-1].body
            assert (done.node, done.hops) == ("node-1", 1), done  # type: ignore[union-attr]
        with Client(binds[0]) as plain, pytest.raises(TimeoutError):  # no CURVE: no handshake, no answer
            plain.status(1.0)


def wait_curve_ready(node: NodeProcess, curve: object, timeout_s: float = 30) -> None:
    with Client(node.bind, curve=curve) as client:  # type: ignore[arg-type]
        client.wait_answering(timeout_s, lambda: node.proc.poll() is None)
