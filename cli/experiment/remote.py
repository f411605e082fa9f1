"""A deployed cluster, named by the cluster file `ansible-playbook deploy.yml` writes.

    [cluster]      name, scheduler = "centralized" | "gossip" | "hybrid", ansible_dir, inventory, become
    [coordinator]  host, endpoint, events_endpoint    (centralized, hybrid: its peers' coordinator)
    [standby]      host, endpoint, events_endpoint    (optional: its failover partner)
    [[nodes]]      name, host, endpoint               (one per GPU node)
    [security]     curve_dir, server_key, client_key, allowed_keys_dir   (CURVE, optional)

The daemons are systemd units on their hosts: the experiment drives them (the load
generator runs here) and observes them (the coordinator's events, each node's state once a
second), and leaves them running afterwards. Faults run on the hosts through Ansible with
the deployment's own inventory (hosts.py); a killed daemon is restarted by systemd there.
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.experiment.hosts import HostControl
from cli.experiment.moves import order_migration
from daemons.bus.client import Client
from daemons.bus.security import CurveClient, Security, SecurityConfig
from daemons.bus.status import live_nodes_seen
from daemons.core.errors import ConfigError
from daemons.core.settings import build

READY_TIMEOUT_S = 10.0


@dataclass
class RemoteCluster:
    path: Path
    scheduler: str = "centralized"
    coordinator: str = ""
    coordinator_events: str = ""
    node_endpoints: dict[str, str] = field(default_factory=dict)
    curve: CurveClient | None = None
    standby: str = ""
    standby_events: str = ""
    hosts: dict[str, str] = field(default_factory=dict)  # daemon name -> the inventory host it runs on
    control: HostControl | None = None  # None: the file names no inventory (faults refused)

    @classmethod
    def load(cls, path: Path) -> RemoteCluster:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"cluster file {path} not found: ansible-playbook deploy.yml writes it "
                              "(schedctl_cluster_file)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cluster file {path} is not valid TOML ({exc})") from None
        nodes = {str(n.get("name")): str(n.get("endpoint")) for n in data.get("nodes", []) if isinstance(n, dict)}
        standby = data.get("standby", {})
        cluster = cls(path, str(data.get("cluster", {}).get("scheduler", "centralized")),
                      str(data.get("coordinator", {}).get("endpoint", "")),
                      str(data.get("coordinator", {}).get("events_endpoint", "")), nodes, _curve(data, path),
                      str(standby.get("endpoint", "")), str(standby.get("events_endpoint", "")),
                      _hosts(data), _control(data.get("cluster", {})))
        cluster._check()
        return cluster

    def _check(self) -> None:
        from cli.experiment.cluster import WITH_COORDINATOR  # here: `schedctl status` imports this module
        from cli.experiment.spec import SCHEDULERS

        if not self.node_endpoints:
            raise ConfigError(f"{self.path}: no [[nodes]] with name and endpoint")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"{self.path}: [cluster] scheduler {self.scheduler!r} is unknown; use "
                              f"{', '.join(SCHEDULERS)} (what the cluster was deployed with)")
        if self.scheduler in WITH_COORDINATOR and not self.coordinator:
            raise ConfigError(f"{self.path}: a {self.scheduler} cluster needs [coordinator] endpoint")
        if self.scheduler == "hybrid" and not self.coordinator_events:
            raise ConfigError(f"{self.path}: a hybrid cluster needs [coordinator] events_endpoint (its model map "
                              "and heartbeats, which the run records)")

    def start(self) -> None:
        """Check that the deployed daemons answer, and that the coordinator has heard from every
        node (a request sent before would be refused as unknown); nothing is started."""
        targets = {"coordinator": self.coordinator} if self.scheduler != "gossip" else {}
        if self.standby:
            targets["standby"] = self.standby
        targets.update(self.node_endpoints)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, endpoint in targets.items():
            with Client(endpoint, curve=self.curve) as client:
                self._wait_ready(client, name, endpoint, deadline)

    def _wait_ready(self, client: Client, name: str, endpoint: str, deadline: float) -> None:
        seen = 0
        while True:
            try:
                reply = client.status(max(0.5, deadline - time.monotonic()))
            except TimeoutError:
                raise ConfigError(f"{name} at {endpoint} did not answer within {READY_TIMEOUT_S:.0f} s: is the "
                                  "cluster deployed and running (systemctl status schedctl.target)?") from None
            if name != "coordinator" or reply.role != "coordinator":
                return
            seen = live_nodes_seen(reply)
            if seen >= len(self.node_endpoints):
                return
            if time.monotonic() >= deadline:
                raise ConfigError(f"the coordinator at {endpoint} has heard from {seen} of the "
                                  f"{len(self.node_endpoints)} nodes of {self.path} after {READY_TIMEOUT_S:.0f} s: "
                                  "are the nodes running and publishing to its state_bind?")
            time.sleep(0.1)

    def stop(self) -> None:
        """The deployed daemons keep running."""

    # ----- faults (cli/experiment/faults.py), on the hosts -----------------------------------
    def signal(self, name: str, sig: int) -> None:
        self._control().signal(self._host(name), _unit(name), sig)

    def restart(self, name: str, downtime_s: float) -> None:
        self._control().restart(self._host(name), _unit(name), downtime_s)

    def cut(self, name: str, duration_s: float = 0.0) -> None:
        self._control().cut(self._host(name), duration_s)

    def migrate(self, name: str) -> str:
        return order_migration(self.node_endpoints, name, self.curve)

    def heal(self, name: str) -> None:
        self._control().heal(self._host(name))

    def _control(self) -> HostControl:
        if self.control is None:
            raise ConfigError(f"{self.path} names no inventory ([cluster] inventory, ansible_dir): faults run on "
                              "the hosts through Ansible; deploy again with this version's deploy.yml")
        return self.control

    def _host(self, name: str) -> str:
        host = self.hosts.get(name)
        if host is None:
            raise ConfigError(f"{self.path} says nothing of {name!r}'s host; known: {', '.join(sorted(self.hosts))}")
        return host


def _unit(name: str) -> str:
    return "schedctl-coordinator.service" if name in ("coordinator", "standby") else "schedctl-node.service"


def _hosts(data: dict[str, Any]) -> dict[str, str]:
    nodes = [n for n in data.get("nodes", []) if isinstance(n, dict) and n.get("host")]
    hosts = {str(n.get("name")): str(n["host"]) for n in nodes}
    for role in ("coordinator", "standby"):
        table = data.get(role, {})
        if isinstance(table, dict) and table.get("host"):
            hosts[role] = str(table["host"])
    return hosts


def _control(table: dict[str, Any]) -> HostControl | None:
    if not table.get("inventory") or not table.get("ansible_dir"):
        return None
    return HostControl(Path(str(table["ansible_dir"])), Path(str(table["inventory"])), bool(table.get("become", True)))


def _curve(data: dict[str, Any], path: Path) -> CurveClient | None:
    table = data.get("security")
    if not table:
        return None
    config = build(SecurityConfig, dict(table), f"[security] of {path}")
    return Security(config).client
