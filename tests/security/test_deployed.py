"""The deployment's key layout on loopback: per-host curve dirs as ansible installs them
(ansible/roles/schedctl/tasks/keys.yml), a cluster file, real `schedctl start` daemons.
Forged state and witness queries from an admitted key of the wrong identity are refused;
the operator commands reach the daemons with the cluster file's keys."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import zmq

from daemons.bus import encode, make_socket
from daemons.bus.client import Client
from daemons.bus.security import CurveClient, Security, SecurityConfig
from daemons.coordinator.testing import schedctl
from daemons.core.messages import NodeState, WitnessQuery
from daemons.core.process import DaemonProcess, free_endpoint

HOSTS = {"coord-1": "coordinator", "gpu-1": "node", "load-1": "loadgen"}
BOGUS = "tcp://127.0.0.1:9"


def install(keys: Path, root: Path, host: str, binds: bool) -> dict[str, str]:
    """One host's /etc/schedctl/curve, as keys.yml lays it out; its [security] table."""
    curve = root / host / "curve"
    (curve / "allowed").mkdir(parents=True)
    shutil.copy(keys / "server.key", curve / "server.key")
    if binds:
        shutil.copy(keys / "server.key_secret", curve / "server.key_secret")
    shutil.copy(keys / f"{host}.key", curve / "client.key")
    shutil.copy(keys / f"{host}.key_secret", curve / "client.key_secret")
    for name in ["controller", *HOSTS]:
        shutil.copy(keys / f"{name}.key", curve / "allowed" / f"{name}.key")
    return {"curve_dir": str(curve), "server_key": "server", "client_key": "client",
            "allowed_keys_dir": str(curve / "allowed")}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("deployed")
    keys = tmp / "keys"
    gen = [schedctl(), "keys", "generate", "--dir", str(keys)]
    subprocess.run([*gen, "--name", "server"], check=True, capture_output=True, timeout=60)
    subprocess.run([*gen, "--name", "controller", "--role", "operator,collector"], check=True, capture_output=True,
                   timeout=60)
    for host, role in HOSTS.items():
        subprocess.run([*gen, "--name", host, "--role", role], check=True, capture_output=True, timeout=60)
    sec = {h: install(keys, tmp, h, binds=h != "load-1") for h in HOSTS}
    coord, state, events, node = (free_endpoint() for _ in range(4))
    (tmp / "coord.toml").write_text(tomli_w.dumps({"security": sec["coord-1"], "coordinator": {
        "name": "coord-1", "bind": coord, "state_bind": state, "events_bind": events}}))
    (tmp / "node.toml").write_text(tomli_w.dumps({"security": sec["gpu-1"], "node": {
        "name": "gpu-1", "bind": node, "publish_to": [state], "gpu_backend": "emulated",
        "models": ["facebook/opt-125m"], "checkpoint_tier": "gpu", "init_s": 0.2}}))
    (tmp / "cluster.toml").write_text(tomli_w.dumps({
        "cluster": {"name": "test", "scheduler": "centralized"},
        "coordinator": {"host": "coord-1", "endpoint": coord, "state_endpoint": state, "events_endpoint": events},
        "nodes": [{"name": "gpu-1", "host": "gpu-1", "endpoint": node}],
        "security": {"curve_dir": str(keys), "server_key": "server", "client_key": "controller",
                     "allowed_keys_dir": str(sec["coord-1"]["allowed_keys_dir"])}}))
    with contextlib.ExitStack() as stack:
        def start(what: str, config: str) -> DaemonProcess:
            argv = [schedctl(), "start", what, "--config", str(tmp / config)]
            return stack.enter_context(DaemonProcess(argv, name=what, log_path=tmp / f"{what}.log"))

        coordinator = start("coordinator", "coord.toml")
        start("node", "node.toml")
        operator = Security(SecurityConfig(curve_dir=str(keys), client_key="controller",
                                           allowed_keys_dir=sec["coord-1"]["allowed_keys_dir"])).client
        with Client(coord, curve=operator) as client:
            coordinator.wait_ready(lambda: sees_a_node(client), 60)
        yield {"tmp": tmp, "coord": coord, "state": state, "node": node, "sec": sec, "operator": operator}


def sees_a_node(client: Client) -> bool:
    try:
        return any(r.get("alive") for r in client.status(1).nodes)
    except TimeoutError:
        return False


def host_key(d: dict[str, Any], host: str) -> CurveClient | None:
    return Security(SecurityConfig(**d["sec"][host])).client


def gpu1_endpoint(d: dict[str, Any]) -> str:
    with Client(d["coord"], curve=d["operator"]) as client:
        return str(next(r for r in client.status().nodes if r.get("node") == "gpu-1")["endpoint"])


def publish(d: dict[str, Any], curve: CurveClient | None, seconds: float) -> bool:
    """Publish a forged gpu-1 state with `curve`; True once the coordinator believes it."""
    state = NodeState(node="gpu-1", endpoint=BOGUS, gen=7, seq=10**9, gpus=[], models=[], queue_depth=0)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        pub = make_socket(ctx, zmq.PUB, curve=curve)
        pub.connect(d["state"])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pub.send(encode(state, "gpu-1"))
            time.sleep(0.05)
            if gpu1_endpoint(d) == BOGUS:
                return True
        return False
    finally:
        ctx.destroy(0)


def test_forged_state_refused_under_the_deployments_keys(deployed: dict[str, Any]) -> None:
    assert not publish(deployed, host_key(deployed, "load-1"), 2.0)
    assert not publish(deployed, host_key(deployed, "coord-1"), 2.0)
    assert not publish(deployed, None, 1.0)
    assert publish(deployed, host_key(deployed, "gpu-1"), 5.0)  # control: the node's own key


def test_witness_query_only_from_the_coordinators_key(deployed: dict[str, Any]) -> None:
    query = WitnessQuery("coord-1", 9, deployed["coord"], 0.1)
    with Client(deployed["node"], name="coord-1", curve=host_key(deployed, "load-1")) as forger:
        forger.send(query, "q")
        with pytest.raises(TimeoutError):
            forger.recv(2.0)
    with Client(deployed["node"], name="coord-1", curve=host_key(deployed, "coord-1")) as coordinator:
        coordinator.send(query, "q")
        assert coordinator.recv(10.0).type == "witness_vote"


def test_status_with_the_cluster_file(deployed: dict[str, Any]) -> None:
    cluster = deployed["tmp"] / "cluster.toml"
    out = subprocess.run([schedctl(), "status", "--cluster", str(cluster), "--timeout", "5"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "gpu-1" in out.stdout
    node = subprocess.run([schedctl(), "status", "--cluster", str(cluster), "--node", deployed["node"]],
                          capture_output=True, text=True, timeout=60)
    assert node.returncode == 0, node.stderr
