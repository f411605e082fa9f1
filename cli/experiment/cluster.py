"""A local cluster on loopback: the same `schedctl start ...` processes systemd runs.

Every process is a `DaemonProcess` (daemons/core/process.py) started in this module and
stopped in `stop()`, which also runs on Ctrl-C and on failure. When this process dies
without running `stop()` (SIGKILL, a crash) the kernel kills the daemons (PR_SET_PDEATHSIG,
set by each daemon at start-up: daemons/bus/activation.py), and their backend instances die
with their node the same way. The signal fires when the *thread* that spawned a daemon exits,
so every daemon, restarts included, is spawned from one thread that lives until `stop()`.

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

import functools
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.experiment.keys import COLLECTOR, LOADGEN, OPERATOR, LocalKeys
from cli.experiment.moves import order_migration
from cli.experiment.netns import Network
from cli.experiment.spec import ExperimentSpec
from daemons.bus import activation
from daemons.bus.client import Client
from daemons.bus.security import CurveClient, Security
from daemons.bus.status import live_nodes_seen
from daemons.core.errors import SchedctlError
from daemons.core.process import DaemonProcess, host_port, schedctl_executable, stop_all
from daemons.node.config import write_node_config

READY_TIMEOUT_S = 60.0
# Each node is a Python process whose start costs CPU: a large cluster on a few cores gets longer.
READY_PER_NODE_S = 0.5
STOP_TIMEOUT_S = 15.0  # SIGTERM to SIGKILL
GRACE_S = 10.0  # for what a daemon leaves behind (DaemonProcess.stop)
# A node alone in its namespace owns every port of its address: the daemons' default ports.
NODE_PORT, GOSSIP_PORT = 5560, 5561
WITH_COORDINATOR = ("centralized", "hybrid")  # the arms that start a coordinator
MODEL_MAP_S = 1.0  # hybrid: the coordinator's map every second (and soon after each load it places)


class ClusterError(SchedctlError):
    """The local cluster could not be started."""


@dataclass
class LocalCluster:
    """The daemons of one arm of an experiment, as processes of this one (see the module docstring).

    `start()` makes the per-run CURVE keys, binds every endpoint (the listening sockets are
    handed down, so all addresses are known up front), then spawns, in this order: with
    centralized scheduling the coordinator (and with --standby-coordinator the standby),
    then the nodes, each `schedctl start node` with a config written into `workdir` (its log
    beside it, `NAME.log`). It returns once every one answers a status request: a node at
    once, a coordinator or gossip peer once it sees every node alive, the primary of a pair
    once it is active. A daemon that exits meanwhile, or the deadline (60 s, plus 0.5 s per node), raises
    `DaemonError` with the end of its log.

    `stop()` sends every daemon SIGCONT and SIGTERM at once, gives them 15 s together, then
    SIGKILLs; whatever a daemon left behind gets 10 s more, then SIGKILL (DaemonProcess.stop).
    Then the keys are deleted, the spawner thread ends, unused listening sockets close and
    the network (if any) is removed. On Ctrl-C or SIGTERM the terminal's signal reaches only
    `schedctl experiment run` (each daemon runs in its own process group): the runner stops
    the load generator and the collector first, then calls `stop()` (cli/experiment/runner.py);
    a second Ctrl-C aborts that, and the spawner thread's end takes the daemons with it
    (PR_SET_PDEATHSIG).

    Faults (cli/experiment/faults.py) act through `signal`, `restart`, `cut` and `heal`.
    """

    spec: ExperimentSpec
    scheduler: str
    workdir: Path
    collector_address: str
    daemons: list[DaemonProcess] = field(default_factory=list)  # restarts append: the latest of a name counts
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
        state_binds = self._start_coordinators() if self.scheduler in WITH_COORDINATOR else []
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
                queue_timeout_s=self.spec.timeout_s, max_running=self.spec.max_running,
                priority=self.spec.priority, priority_aging_s=self.spec.priority_aging_s,
                admission=self.spec.admission, backend=self.spec.backend, **self._learning_settings(),
                **self._gossip_settings(name), **self._hybrid_settings())
            self._spawn(name, ["start", "node", "--config", str(config)])
        self._wait_ready()

    def _learning_settings(self) -> dict[str, Any]:
        """Learned affinity and pre-warming, the same for every node (and the coordinator's flags)."""
        spec = self.spec
        return {"affinity": spec.affinity, "prewarm": spec.prewarm, "forecast_alpha": spec.forecast_alpha,
                "forecast_beta": spec.forecast_beta, "forecast_horizon_s": spec.forecast_horizon_s,
                "prewarm_instance_rps": spec.prewarm_instance_rps}

    def _start_coordinators(self) -> list[str]:
        """The coordinator, and with --standby-coordinator its backup (failover.py); their state addresses."""
        self.coordinator, state_bind, self.coordinator_events = (self._endpoint("coordinator") for _ in range(3))
        common = ["--policy", self.spec.policy, "--queue-limit", str(self.spec.queue_limit),
                  "--queue-timeout", f"{self.spec.timeout_s:g}", "--admission", self.spec.admission,
                  "--affinity", self.spec.affinity, "--prewarm", self.spec.prewarm,
                  "--forecast-alpha", repr(self.spec.forecast_alpha), "--forecast-beta", repr(self.spec.forecast_beta),
                  "--forecast-horizon", repr(self.spec.forecast_horizon_s),
                  "--prewarm-instance-rps", repr(self.spec.prewarm_instance_rps),
                  "--priority-aging", f"{self.spec.priority_aging_s!r}",
                  *([] if self.spec.priority else ["--no-priority"]),
                  # the rebalancer is the centralized arm's (spec.py); a hybrid coordinator migrates only on referral
                  *(["--rebalance"] if self.spec.rebalance and self.scheduler == "centralized" else []),
                  *([] if self.spec.live_migration else ["--no-live-migration"])]
        if self.scheduler == "hybrid":  # it publishes its map (while active, with a standby)
            common += ["--model-map-every", f"{MODEL_MAP_S:g}"]
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
        if self.scheduler in WITH_COORDINATOR:
            daemons.update(dict.fromkeys(("coordinator", "standby"), "coordinator"))
        self.keys = LocalKeys.create(daemons)

    @property
    def curve(self) -> CurveClient | None:
        """The load generator's keys (the runner passes them to run_loadgen)."""
        return self.keys.client(LOADGEN) if self.keys else None

    def security_for(self, who: str = COLLECTOR) -> Security | None:
        return self.keys.security(who) if self.keys else None

    def _hybrid_settings(self) -> dict[str, object]:
        """A hybrid peer's coordinator: where it refers cold starts, where its map comes from."""
        if self.scheduler != "hybrid":
            return {}
        standby = {"standby": self.standby, "standby_events": self.standby_events} if self.standby else {}
        return {"coordinator": self.coordinator, "coordinator_events": self.coordinator_events, **standby}

    def _gossip_settings(self, name: str) -> dict[str, object]:
        if self.scheduler not in ("gossip", "hybrid"):
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
        """Start `name` from the spawner thread, handing it its listening sockets and its CURVE identity."""
        self._args[name] = args
        sockets = self._listening.pop(name, [])
        keys = self.keys.env(name) if self.keys else {}  # cli/experiment/keys.py
        spawn = functools.partial(
            DaemonProcess, [*self._spawn_prefix(name), schedctl_executable(), *args], name=name,
            log_path=self.workdir / f"{name}.log", append=True, hand_down=sockets,
            env=activation.child_env(sockets, {**os.environ, **keys}))
        try:
            daemon = self._spawner.submit(spawn).result()
        except BaseException:
            for sock in sockets:  # closed by DaemonProcess once it ran; not if it never did
                sock.close()
            raise
        self.daemons.append(daemon)

    def _listen_again(self, name: str) -> None:
        """A restart serves the same endpoints: hold them again (free since the old process exited)."""
        for endpoint in self._endpoints.get(name, []):
            host, port = host_port(endpoint)
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
        deadline = time.monotonic() + READY_TIMEOUT_S + READY_PER_NODE_S * len(self.node_endpoints)
        for name, endpoint in self._status_endpoints().items():
            with Client(endpoint, curve=self.keys.client(OPERATOR) if self.keys else None) as client:
                self.current(name).wait_ready(functools.partial(self._answers, client, name),
                                              max(0.0, deadline - time.monotonic()))

    def _status_endpoints(self) -> dict[str, str]:
        endpoints = dict(self.node_endpoints)
        if self.coordinator:
            endpoints["coordinator"] = self.coordinator
        if self.standby:
            endpoints["standby"] = self.standby
        return endpoints

    def _answers(self, client: Client, name: str) -> bool:
        for d in self.daemons:  # any daemon's exit fails the start, not only the one asked
            d.check_running("while the cluster started")
        try:
            reply = client.status(0.5)
        except TimeoutError:
            return False
        # The coordinator is ready once it has heard from every node (and, in a failover
        # pair, the primary once it is active), a gossip peer once it knows every peer's record.
        if name == "coordinator" and self.standby and reply.info.get("state") != "active":
            return False
        if reply.role in ("coordinator", "gossip-peer"):
            return live_nodes_seen(reply) >= len(self.node_endpoints)
        return True

    # ----- faults (cli/experiment/faults.py) ------------------------------------------
    def current(self, name: str) -> DaemonProcess:
        """The latest process of `name` (a restart appends a new one; old ones stay listed)."""
        for d in reversed(self.daemons):
            if d.name == name:
                return d
        raise ClusterError(f"no process named {name!r} in this cluster")

    def signal(self, name: str, sig: int) -> None:
        self.current(name).send_signal(sig)

    def restart(self, name: str, downtime_s: float) -> None:
        """Stop it (SIGTERM, then SIGKILL), stay down `downtime_s`, then the same command again."""
        self.current(name).stop(STOP_TIMEOUT_S, GRACE_S)
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
            stop_all(self.daemons, STOP_TIMEOUT_S, GRACE_S)
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
