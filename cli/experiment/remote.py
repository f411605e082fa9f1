"""A deployed cluster, named by the cluster file `ansible-playbook deploy.yml` writes.

    [cluster]      name, scheduler = "centralized" | "gossip"
    [coordinator]  endpoint, events_endpoint          (centralized)
    [standby]      endpoint, events_endpoint          (optional: its failover partner)
    [[nodes]]      name, endpoint                     (one per GPU node)
    [security]     curve_dir, server_key, client_key, allowed_keys_dir   (CURVE, optional)

The daemons are systemd units on their hosts: the experiment only drives them (the load
generator runs here) and observes them (the coordinator's events, each node's state once a
second), and leaves them running afterwards. Faults need process control on the hosts, so
they are for local clusters only.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons.bus.client import Client
from daemons.bus.errors import ConfigError
from daemons.bus.security import CurveClient, Security, SecurityConfig
from daemons.bus.settings import build

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
                      str(standby.get("endpoint", "")), str(standby.get("events_endpoint", "")))
        cluster._check()
        return cluster

    def _check(self) -> None:
        if not self.node_endpoints:
            raise ConfigError(f"{self.path}: no [[nodes]] with name and endpoint")
        if self.scheduler == "centralized" and not self.coordinator:
            raise ConfigError(f"{self.path}: a centralized cluster needs [coordinator] endpoint")

    def start(self) -> None:
        """Check that the deployed daemons answer; nothing is started."""
        targets = {"coordinator": self.coordinator} if self.scheduler == "centralized" else {}
        if self.standby:
            targets["standby"] = self.standby
        targets.update(self.node_endpoints)
        for name, endpoint in targets.items():
            with Client(endpoint, curve=self.curve) as client:
                try:
                    client.status(READY_TIMEOUT_S)
                except TimeoutError:
                    raise ConfigError(f"{name} at {endpoint} did not answer within {READY_TIMEOUT_S:.0f} s: is the "
                                      "cluster deployed and running (systemctl status schedctl.target)?") from None

    def stop(self) -> None:
        """The deployed daemons keep running."""

    def signal(self, name: str, sig: int) -> None:
        raise ConfigError("faults need process control: run them on a local cluster, not with --cluster")

    def restart(self, name: str, downtime_s: float) -> None:
        self.signal(name, 0)

    def cut(self, name: str) -> None:
        raise ConfigError("partition faults need network namespaces on this machine: run them on a local "
                          "cluster (as root), not with --cluster")

    def heal(self, name: str) -> None:
        self.cut(name)


def _curve(data: dict[str, Any], path: Path) -> CurveClient | None:
    table = data.get("security")
    if not table:
        return None
    config = build(SecurityConfig, dict(table), f"[security] of {path}")
    return Security(config).client
