"""A local cluster on loopback: the same `schedctl start ...` processes systemd runs.

Every process is started in this module and stopped in `stop()`, which also runs on
Ctrl-C and on failure. When this process dies without running `stop()` (SIGKILL, a crash)
the kernel kills the daemons (PR_SET_PDEATHSIG, set by each daemon at start-up:
daemons/bus/activation.py), and their backend instances die with their node the same way.
The signal fires when the *thread* that spawned a daemon exits, so every daemon, restarts
included, is spawned from one thread that lives until `stop()`.

No port can be taken between choosing and binding it: the cluster binds and listens on
every endpoint itself (port 0, the kernel picks) and hands the listening sockets to the
daemon that serves them (activation.py, like systemd socket activation). So every address
is known before the first daemon starts, and dependants (nodes, seeds, the load generator,
a failover pair naming each other) simply get them.

With a `network` (cli/experiment/netns.py, for partition faults) each node runs in its own
network namespace and listens on its own address there; the coordinator binds on the
bridge's address in the root namespace, where the collector and the load generator are.
`stop()` removes the network after the processes.

CURVE is on unless the spec says `insecure` (`--insecure`): keys are made per run
(cli/experiment/keys.py), each daemon gets its own identity through its environment, and
`curve` / `security_for` give the runner's load generator and collector theirs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cli.experiment.keys import COLLECTOR, LOADGEN, OPERATOR, LocalKeys
from cli.experiment.moves import order_migration
from cli.experiment.netns import Network
from cli.experiment.spec import ExperimentSpec
from daemons.bus import activation
from daemons.bus.client import Client
from daemons.bus.security import CurveClient, Security
from daemons.core.errors import SchedctlError
from daemons.node.config import write_node_config
from daemons.node.instances import schedctl_command

READY_TIMEOUT_S = 60.0
# A node alone in its namespace owns every port of its address: the daemons' default ports.
NODE_PORT, GOSSIP_PORT = 5560, 5561


class ClusterError(SchedctlError):
    """The local cluster could not be started."""


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""


@dataclass
class LocalCluster:
    spec: ExperimentSpec
    scheduler: str
    workdir: Path
    collector_address: str
    daemons: list[Daemon] = field(default_factory=list)
    node_endpoints: dict[str, str] = field(default_factory=dict)
    coordinator: str = ""
    coordinator_events: str = ""
    standby: str = ""  # the standby coordinator's request endpoint (--standby-coordinator)
    standby_events: str = ""
    gossip_addresses: dict[str, str] = field(default_factory=dict)
    _args: dict[str, list[str]] = field(default_factory=dict)
    network: Network | None = None  # the cluster owns it: stop() removes it
    keys: LocalKeys | None = None  # per-run CURVE keys (None: --insecure); stop() deletes them
    _listening: dict[str, list[socket.socket]] = field(default_factory=dict)  # handed at the next spawn
    _endpoints: dict[str, list[str]] = field(default_factory=dict)  # daemon -> endpoints it serves
    # One long-lived thread spawns every daemon: PR_SET_PDEATHSIG fires when the spawning thread exits.
    _spawner: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="cluster-spawner"))

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_keys()
        state_binds = self._start_coordinators() if self.scheduler == "centralized" else []
        names = self.spec.node_names()
        self.gossip_addresses = {name: self._endpoint(name, name, GOSSIP_PORT) for name, _ in names}
        for name, group in names:
            bind = self._endpoint(name, name, NODE_PORT)
            self.node_endpoints[name] = bind
            publish = [*state_binds, self.collector_address]
            config = write_node_config(
                self.workdir / f"{name}.toml", name=name, bind=bind, publish_to=publish,
                gpu_backend="emulated", gpu=group.gpu, checkpoint_tier=group.checkpoint_tier,
                models=list(group.models), kv_tokens=group.kv_tokens, init_s=group.init_s,
                scheduler=self.scheduler, queue_limit=self.spec.queue_limit,
                queue_timeout_s=self.spec.timeout_s, **self._gossip_settings(name))
            self._spawn(name, ["start", "node", "--config", str(config)])
        self._wait_ready()

    def _start_coordinators(self) -> list[str]:
        """The coordinator, and with --standby-coordinator its backup (failover.py); their state addresses."""
        self.coordinator, state_bind, self.coordinator_events = (self._endpoint("coordinator") for _ in range(3))
        common = ["--policy", self.spec.policy, "--queue-limit", str(self.spec.queue_limit),
                  "--queue-timeout", f"{self.spec.timeout_s:g}", *(["--rebalance"] if self.spec.rebalance else []),
                  *([] if self.spec.live_migration else ["--no-live-migration"])]
        if not self.spec.standby_coordinator:
            self._spawn("coordinator", ["start", "coordinator", "--bind", self.coordinator, "--state-bind", state_bind,
                                        "--events-bind", self.coordinator_events, *common])
            return [state_bind]
        self.standby, standby_state, self.standby_events = (self._endpoint("standby") for _ in range(3))
        common += ["--failover-after", f"{self.spec.failover_after_s:g}"]
        pair = (("coordinator", "primary", self.coordinator, state_bind, self.coordinator_events,
                 self.standby, self.standby_events),
                ("standby", "backup", self.standby, standby_state, self.standby_events,
                 self.coordinator, self.coordinator_events))
        for name, role, bind, state, events, peer, peer_events in pair:
            self._spawn(name, ["start", "coordinator", "--name", name, "--role", role, "--bind", bind,
                               "--state-bind", state, "--events-bind", events, "--peer", peer,
                               "--peer-events", peer_events, "--epoch-file", str(self.workdir / f"{name}.epoch"),
                               *common])
        return [state_bind, standby_state]

    def _make_keys(self) -> None:
        if self.spec.insecure or self.keys is not None:
            return
        daemons = dict.fromkeys((n for n, _ in self.spec.node_names()), "node")
        if self.scheduler == "centralized":
            daemons.update(dict.fromkeys(("coordinator", "standby"), "coordinator"))
        self.keys = LocalKeys.create(daemons)

    @property
    def curve(self) -> CurveClient | None:
        """The load generator's keys (the runner passes them to run_loadgen)."""
        return self.keys.client(LOADGEN) if self.keys else None

    def security_for(self, who: str = COLLECTOR) -> Security | None:
        return self.keys.security(who) if self.keys else None

    def _gossip_settings(self, name: str) -> dict[str, object]:
        if self.scheduler != "gossip":
            return {}
        first = next(iter(self.gossip_addresses))
        seed = self.gossip_addresses[first if name != first else list(self.gossip_addresses)[-1]]
        return {"gossip_bind": self.gossip_addresses[name], "seeds": [seed] if len(self.gossip_addresses) > 1 else [],
                "gossip_policy": self.spec.gossip_policy, "gossip_preset": self.spec.gossip_preset}

    def _endpoint(self, daemon: str, node: str = "", port: int = 0) -> str:
        """An address for `daemon` to serve: a loopback port held listening from now on and handed
        to it (activation.py); with a network, the same on the bridge (root namespace), or `port`
        on `node`'s own address, where nothing else listens (its namespace is ours alone)."""
        if self.network is not None and node:
            return f"tcp://{self.network.address(node)}:{port}"
        sock = activation.listen(self.network.host if self.network is not None else "127.0.0.1")
        self._listening.setdefault(daemon, []).append(sock)
        endpoint = activation.endpoint_of(sock)
        self._endpoints.setdefault(daemon, []).append(endpoint)
        return endpoint

    def _spawn(self, name: str, args: list[str]) -> None:
        """Start `name` from the spawner thread, handing it its listening sockets."""
        self._args[name] = args
        sockets = self._listening.pop(name, [])
        try:
            proc = self._spawner.submit(self._popen, name, args, sockets).result()
        finally:
            for sock in sockets:  # the daemon has its own copies (or never will)
                sock.close()
        self.daemons.append(Daemon(name, proc, self.workdir / f"{name}.log"))

    def _popen(self, name: str, args: list[str], sockets: list[socket.socket]) -> subprocess.Popen[bytes]:
        keys = self.keys.env(name) if self.keys else {}  # its CURVE identity (cli/experiment/keys.py)
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen([*self._spawn_prefix(name), schedctl_command(), *args], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    pass_fds=[s.fileno() for s in sockets],
                                    env=activation.child_env(sockets, {**os.environ, **keys}))

    def _listen_again(self, name: str) -> None:
        """A restart serves the same endpoints: hold them again (free since the old process exited)."""
        for endpoint in self._endpoints.get(name, []):
            host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
            try:
                self._listening.setdefault(name, []).append(activation.listen(host, int(port)))
            except OSError as exc:
                raise ClusterError(f"cannot restart {name}: {endpoint} was taken while it was down "
                                   f"({exc.strerror})") from None

    def _spawn_prefix(self, name: str) -> list[str]:
        """`ip netns exec NS` for a node of a run with a network (it execs: proc.pid is the daemon's)."""
        if self.network is None or name not in self.network.nodes:
            return []
        return self.network.exec_prefix(name)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, endpoint in self._status_endpoints().items():
            client = Client(endpoint, curve=self.keys.client(OPERATOR) if self.keys else None)
            try:
                while not self._answers(client, name, deadline):
                    pass
            finally:
                client.close()

    def _status_endpoints(self) -> dict[str, str]:
        endpoints = dict(self.node_endpoints)
        if self.coordinator:
            endpoints["coordinator"] = self.coordinator
        if self.standby:
            endpoints["standby"] = self.standby
        return endpoints

    def _answers(self, client: Client, name: str, deadline: float) -> bool:
        self._check_alive()
        if time.monotonic() > deadline:
            raise ClusterError(f"{name} did not become ready within {READY_TIMEOUT_S:.0f} s")
        try:
            reply = client.status(0.5)
        except TimeoutError:
            return False
        # The coordinator is ready once it has heard from every node (and, in a failover
        # pair, the primary once it is active), a gossip peer once it knows every peer's record.
        if name == "coordinator" and self.standby and reply.info.get("state") != "active":
            return False
        if reply.role in ("coordinator", "gossip-peer"):
            return sum(1 for n in reply.nodes if n.get("alive") and n.get("endpoint")) >= len(self.node_endpoints)
        return True

    def _check_alive(self) -> None:
        for d in self.daemons:
            if d.proc.poll() is not None:
                raise ClusterError(f"{d.name} exited with {d.proc.returncode} while starting:\n{d.tail()}")

    # ----- faults (cli/experiment/faults.py) ------------------------------------------
    def current(self, name: str) -> Daemon:
        """The latest process of `name` (a restart appends a new one; old ones stay listed)."""
        for d in reversed(self.daemons):
            if d.name == name:
                return d
        raise ClusterError(f"no process named {name!r} in this cluster")

    def signal(self, name: str, sig: int) -> None:
        proc = self.current(name).proc
        if proc.poll() is None:
            proc.send_signal(sig)

    def restart(self, name: str, downtime_s: float) -> None:
        """SIGTERM, wait for the exit, stay down `downtime_s`, then the same command again."""
        proc = self.current(name).proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        time.sleep(downtime_s)
        self._listen_again(name)
        self._spawn(name, self._args[name])

    def migrate(self, name: str) -> str:
        return order_migration(self.node_endpoints, name, self.keys.client(OPERATOR) if self.keys else None)

    def cut(self, name: str, duration_s: float = 0.0) -> None:
        self._network().cut(name)  # healed by the injector after duration_s

    def heal(self, name: str) -> None:
        self._network().heal(name)

    def _network(self) -> Network:
        if self.network is None:
            raise ClusterError("this cluster runs on loopback and cannot be partitioned: the runner gives it "
                               "a network (netns.Network) when the spec has a partition fault")
        return self.network

    def stop(self) -> None:
        """SIGTERM everything, wait, then SIGKILL whatever (or whoever's child) remains; then the network."""
        try:
            self._stop_processes()
        finally:
            if self.keys is not None:
                self.keys.remove()
            self._spawner.shutdown(wait=True)
            for sockets in self._listening.values():
                for sock in sockets:
                    sock.close()
            self._listening.clear()
            if self.network is not None:
                self.network.close()

    def _stop_processes(self) -> None:
        procs = [d.proc for d in self.daemons]
        kids = [k for p in procs for k in _children(p.pid)]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)  # a paused process (fault) would never see SIGTERM
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        _, alive = psutil.wait_procs(kids, timeout=10)
        for k in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                k.kill()


def _children(pid: int) -> list[psutil.Process]:
    try:
        kids: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return kids
    except psutil.NoSuchProcess:
        return []
