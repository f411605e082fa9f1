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
METRICS = {"schedctl_metrics_coordinator_port": 9464, "schedctl_metrics_node_port": 9465,
           "schedctl_metrics_loadgen_port": 9466}
GROUPS = {"coordinator": ["coord-1", "coord-2"], "gpu_nodes": ["gpu-1"], "loadgen": ["load-1"]}
ADDRESSES = {"coord-1": "10.0.0.10", "coord-2": "10.0.0.13", "gpu-1": "10.0.0.11", "gpu-2": "10.0.0.12",
             "load-1": "10.0.0.20"}


def render(host: str, groups: dict[str, list[str]]) -> dict[str, Any]:
    return tomllib.loads(render_text(host, groups))


def render_text(host: str, groups: dict[str, list[str]], **extra: Any) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined,
                             extensions=["jinja2.ext.do"])
    env.filters.update(comment=lambda text: f"# {text}", to_json=json.dumps, bool=bool)
    hostvars = {h: {"schedctl_address": a, "ansible_host": a} for h, a in ADDRESSES.items()}
    group_names = [g for g, hosts in groups.items() if host in hosts]
    variables = {**DEFAULTS, **METRICS, "schedctl_metrics_address": "", **extra}
    return env.get_template("schedctl.toml.j2").render(
        **variables, groups=groups, hostvars=hostvars, group_names=group_names, inventory_hostname=host,
        schedctl_address=ADDRESSES[host])


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


def test_a_hybrid_cluster_gets_peers_that_refer_to_its_coordinator(tmp_path: Path) -> None:
    """schedctl_scheduler: hybrid: the nodes are gossip peers seeded with each other, naming the
    coordinator, which publishes its model map; the load generator sends to the peers."""
    groups = {**GROUPS, "coordinator": ["coord-1"], "gpu_nodes": ["gpu-1", "gpu-2"]}

    def config(host: str, section: str) -> Any:
        return load(tmp_path, tomllib.loads(render_text(host, groups, schedctl_scheduler="hybrid"))[section], section)

    coordinator = config("coord-1", "coordinator")
    assert coordinator.model_map_s == 1.0 and coordinator.role == "standalone"
    nodes = [config(h, "node") for h in ("gpu-1", "gpu-2")]
    assert all(n.scheduler == "hybrid" and n.coordinator == coordinator.bind and n.coordinator_events ==
               coordinator.events_bind for n in nodes)
    assert [n.gossip_bind for n in nodes] == ["tcp://10.0.0.11:5561", "tcp://10.0.0.12:5561"]
    assert [n.seeds for n in nodes] == [("tcp://10.0.0.12:5561",), ("tcp://10.0.0.11:5561",)]
    loadgen = config("load-1", "loadgen")
    assert loadgen.mode == "gossip" and loadgen.entry == ("tcp://10.0.0.11:5560", "tcp://10.0.0.12:5560")
    assert not nodes[0].standby  # one coordinator: no standby; with a failover pair, both named
    pair = {**groups, "coordinator": ["coord-1", "coord-2"]}
    node = load(tmp_path, tomllib.loads(render_text("gpu-1", pair, schedctl_scheduler="hybrid"))["node"], "node")
    backup = load(tmp_path, render("coord-2", pair)["coordinator"], "coordinator")
    assert (node.standby, node.standby_events) == (backup.bind, backup.events_bind)
    # the default stays centralized: no gossip, no map
    centralized = render("gpu-1", groups)
    assert "scheduler" not in centralized["node"] and "model_map_s" not in render("coord-1", groups)["coordinator"]


@pytest.mark.parametrize("scheduler", ["centralized", "hybrid"])
def test_the_cluster_file_names_the_deployed_scheduler(tmp_path: Path, scheduler: str) -> None:
    """What deploy.yml writes for `experiment run --cluster` is what RemoteCluster reads."""
    from cli.experiment.remote import RemoteCluster

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE.parents[1] / "templates"),
                             undefined=jinja2.StrictUndefined)
    env.filters.update(comment=lambda text: f"# {text}", bool=bool, realpath=lambda p: p)
    hostvars = {h: {"schedctl_address": a, "ansible_host": a} for h, a in ADDRESSES.items()}
    groups = {**GROUPS, "coordinator": ["coord-1"], "gpu_nodes": ["gpu-1", "gpu-2"]}
    path = tmp_path / "cluster.toml"
    path.write_text(env.get_template("cluster.toml.j2").render(
        groups=groups, hostvars=hostvars, schedctl_cluster_name="lab", ansible_managed="managed",
        playbook_dir="/srv/ansible", ansible_inventory_sources=["/srv/ansible/inventory.yml"],
        schedctl_security=False, schedctl_scheduler=scheduler))
    cluster = RemoteCluster.load(path)
    assert cluster.scheduler == scheduler and cluster.coordinator == "tcp://10.0.0.10:5555"
    assert cluster.coordinator_events == "tcp://10.0.0.10:5557"
    assert cluster.node_endpoints == {"gpu-1": "tcp://10.0.0.11:5560", "gpu-2": "tcp://10.0.0.12:5560"}


def test_every_daemon_gets_its_own_metrics_endpoint(tmp_path: Path) -> None:
    from daemons.bus.metrics import MetricsConfig

    both = {**GROUPS, "gpu_nodes": ["gpu-1", "coord-1"]}  # one host running a coordinator and a node
    expected = {("coord-1", "coordinator"): "10.0.0.10:9464", ("coord-1", "node"): "10.0.0.10:9465",
                ("gpu-1", "node"): "10.0.0.11:9465", ("load-1", "loadgen"): "10.0.0.20:9466"}
    for (host, daemon), bind in expected.items():
        path = tmp_path / f"{host}.toml"
        path.write_text(render_text(host, both, schedctl_metrics_address=ADDRESSES[host]))
        assert MetricsConfig.load(path, daemon=daemon).bind == bind, (host, daemon)
    off = tmp_path / "off.toml"
    off.write_text(render_text("gpu-1", GROUPS, schedctl_metrics_address=""))
    assert "metrics" not in tomllib.loads(off.read_text())
    assert not MetricsConfig.load(off, daemon="node").enabled


def test_the_scrape_configuration_lists_every_daemon(tmp_path: Path) -> None:
    import shutil
    import subprocess

    import yaml

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE.parents[1] / "templates"),
                             undefined=jinja2.StrictUndefined)
    env.filters.update(comment=lambda text: f"# {text}")
    hostvars = {h: {"schedctl_address": a, "ansible_host": a} for h, a in ADDRESSES.items()}
    hostvars["load-1"]["schedctl_metrics_address"] = ""  # its metrics turned off: left out
    text = env.get_template("prometheus.yml.j2").render(
        groups=GROUPS, hostvars=hostvars, schedctl_cluster_name="lab", ansible_managed="managed", **METRICS)
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"schedctl-coordinator", "schedctl-node"}
    targets = {(t["labels"]["node"], t["labels"]["daemon"]): t["targets"]
               for job in jobs.values() for t in job["static_configs"]}
    assert targets == {("coord-1", "coordinator"): ["10.0.0.10:9464"], ("coord-2", "coordinator"): ["10.0.0.13:9464"],
                       ("gpu-1", "node"): ["10.0.0.11:9465"]}
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian's `prometheus` package; scripts/ci-system-deps.sh)")
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
