"""The Ansible config template, rendered for one and for two coordinators (a failover pair),
then read by the daemons' own config loaders: what deploy.yml writes is what they accept."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jinja2
import pytest

from daemons.coordinator.config import CoordinatorConfig
from daemons.loadgen.config import LoadgenConfig
from daemons.node.config import NodeConfig

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "schedctl"
DEFAULTS = {"schedctl_coordinator_port": 5555, "schedctl_coordinator_state_port": 5556,
            "schedctl_coordinator_events_port": 5557, "schedctl_node_port": 5560,
            "schedctl_config_dir": "/etc/schedctl", "schedctl_security": False, "ansible_managed": "managed"}
GROUPS = {"coordinator": ["coord-1", "coord-2"], "gpu_nodes": ["gpu-1"], "loadgen": ["load-1"]}
ADDRESSES = {"coord-1": "10.0.0.10", "coord-2": "10.0.0.13", "gpu-1": "10.0.0.11", "load-1": "10.0.0.20"}


def render(host: str, groups: dict[str, list[str]]) -> dict[str, Any]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined,
                             extensions=["jinja2.ext.do"])
    env.filters.update(comment=lambda text: f"# {text}", to_json=json.dumps, bool=bool)
    hostvars = {h: {"schedctl_address": a, "ansible_host": a} for h, a in ADDRESSES.items()}
    group_names = [g for g, hosts in groups.items() if host in hosts]
    text = env.get_template("schedctl.toml.j2").render(
        **DEFAULTS, groups=groups, hostvars=hostvars, group_names=group_names, inventory_hostname=host,
        schedctl_address=ADDRESSES[host])
    return tomllib.loads(text)


def load(tmp: Path, table: dict[str, Any], section: str) -> Any:
    path = tmp / f"{section}.toml"
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items()))
    path.write_text(f"[{section}]\n" + path.read_text())
    return {"coordinator": CoordinatorConfig, "node": NodeConfig, "loadgen": LoadgenConfig}[section].load(path, {})


@pytest.mark.parametrize("coordinators", [1, 2])
def test_every_host_gets_a_config_its_daemon_accepts(tmp_path: Path, coordinators: int) -> None:
    groups = {**GROUPS, "coordinator": GROUPS["coordinator"][:coordinators]}
    primary = load(tmp_path, render("coord-1", groups)["coordinator"], "coordinator")
    node = load(tmp_path, render("gpu-1", groups)["node"], "node")
    loadgen = load(tmp_path, render("load-1", groups)["loadgen"], "loadgen")
    assert node.publish_to[0] == "tcp://10.0.0.10:5556" and len(node.publish_to) == coordinators
    if coordinators == 1:
        assert primary.role == "standalone" and not loadgen.standby
        return
    backup = load(tmp_path, render("coord-2", groups)["coordinator"], "coordinator")
    assert (primary.role, backup.role) == ("primary", "backup")
    assert primary.peer == backup.bind == "tcp://10.0.0.13:5555"
    assert backup.peer_events == primary.events_bind == "tcp://10.0.0.10:5557"
    assert backup.epoch_file == "/var/lib/schedctl/epoch"  # the unit's StateDirectory
    assert node.publish_to[1] == backup.state_bind
    assert (loadgen.coordinator, loadgen.standby) == (primary.bind, backup.bind)
