"""The deployment, end to end, on three real systemd hosts (systemd-nspawn(1)).

    h1: coordinator + loadgen      h2, h3: gpu_nodes (emulated GPUs, backend = tgi)

`ansible-playbook deploy.yml` installs the suite on them over the nsenter connection
(the Ansible docs) from a wheelhouse built from this checkout, with CURVE keys, units and
config; a second run must change nothing. The nodes drive TGI the way a GPU cluster does:
`schedctl_node_backend: tgi`, each node launching `text-generation-launcher` for its models
(here the emulator's `schedctl-tgi-launcher` installed under that name by
`schedctl_node_tgi_emulated`, as on a host without a GPU), no standing backend units.
Then a short load runs through the deployed loadgen unit, one request is followed through
`schedctl logs`, a node is killed with SIGKILL and another frozen with SIGSTOP, and systemd
must bring both back.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.nspawn import Host, Hosts, sh, why_not_runnable

pytestmark = [pytest.mark.systemd, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
WHEELHOUSE = ANSIBLE / ".wheelhouse"
MODEL = "facebook/opt-125m"


def missing_hooks() -> list[str]:
    """Daemon hooks the deployment needs from other parts (see daemons/core/sdnotify.py, security.py)."""
    def source(*paths: str) -> str:
        return "".join(p.read_text() for path in paths for p in sorted((REPO / path).parent.glob(Path(path).name)))

    coordinator = source("daemons/coordinator/*.py", "cli/start_coordinator.py")
    loadgen = source("daemons/loadgen/*.py", "cli/loadgen.py")
    needs = {"coordinator sends READY (sdnotify.ready)": "sdnotify.ready" in coordinator,
             "coordinator uses [security] (CURVE)": "security" in coordinator.lower() and "curve=" in coordinator,
             "loadgen uses [security] (CURVE)": "security" in loadgen.lower() and "curve=" in loadgen}
    return [what for what, present in needs.items() if not present]


def inventory(hosts: list[Host], tmp: Path) -> Path:
    def host(h: Host, **extra: object) -> dict[str, object]:
        return {"ansible_connection": "community.docker.nsenter", "ansible_nsenter_pid": h.pid1,
                "ansible_python_interpreter": "/usr/bin/python3", "schedctl_address": h.address,
                "schedctl_wheelhouse_copy": False, "schedctl_wheelhouse_remote": "/srv/wheels", **extra}

    node_extra = {"models": [MODEL], "preload": [MODEL], "init_s": 0.2, "checkpoint_tier": "dram"}
    h1, h2, h3 = hosts
    data = {"all": {"children": {
        "coordinator": {"hosts": {"h1": host(h1, schedctl_coordinator_dead_after_s=3.0)}},
        "loadgen": {"hosts": {"h1": {}}},
        # DEBUG: the nodes log a line per request, which the journal test finds by request id.
        "gpu_nodes": {"vars": {"schedctl_node_gpu_backend": "emulated", "schedctl_node_extra": node_extra,
                               "schedctl_log_level": "DEBUG",
                               "schedctl_node_backend": "tgi", "schedctl_node_tgi_emulated": True},
                      "hosts": {"h2": host(h2), "h3": host(h3)}},
    }}}
    path = tmp / "inventory.yml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def playbook(inv: Path, tmp: Path, **more: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_NOCOLOR": "1"}
    extra = {"schedctl_keys_dir": str(tmp / "keys"), "schedctl_cluster_file": str(tmp / "keys/cluster.toml"),
             "schedctl_prometheus_file": str(tmp / "keys/prometheus.yml"),
             "schedctl_cluster_name": "systemtest",
             "schedctl_fault_become": False,  # nsenter is root already; there is no sudo in the hosts
             **more}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), "deploy.yml", "-e", json.dumps(extra)],
                          cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=600)


def recap(out: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines -> {host: {"ok": n, "changed": n, "failed": n, ...}}."""
    rows = re.findall(r"^(\S+)\s+:\s+(.*)$", out.split("PLAY RECAP", 1)[-1], flags=re.M)
    return {h: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", rest)} for h, rest in rows}


def journals(hosts: list[Host]) -> str:
    """The schedctl units' last journal lines on every host, for failure messages."""
    out = []
    for h in hosts:
        got = h.run("journalctl", "--no-pager", "-n", "40", "-o", "short-monotonic", "-u", "schedctl-*",
                    "-u", "emulator@*", check=False)
        out.append(f"--- {h.name}\n{got.stdout[-3000:]}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hosts, Path]]:
    reason = why_not_runnable()
    if reason:
        pytest.skip(f"cannot run systemd-nspawn hosts here: {reason}")
    missing = missing_hooks()
    if missing:
        pytest.skip("deployment needs daemon hooks not yet in the tree: " + "; ".join(missing))
    tmp = tmp_path_factory.mktemp("deploy")
    os.environ.setdefault("PYTHON", sys.executable)  # the wheelhouse pins what this venv runs
    sh("bash", str(REPO / "scripts/wheelhouse.sh"), str(WHEELHOUSE), timeout=300)  # bound into the hosts
    hosts = Hosts(3, tmp, binds=[(WHEELHOUSE, "/srv/wheels")])
    try:
        began = time.monotonic()
        hosts.start()
        print(f"booted 3 hosts in {time.monotonic() - began:.1f} s")
        inv = inventory(hosts.hosts, tmp)
        for attempt in ("first", "second"):
            began = time.monotonic()
            run = playbook(inv, tmp)
            (tmp / f"ansible-{attempt}.log").write_text(run.stdout + run.stderr)
            assert run.returncode == 0, (f"{attempt} deploy failed:\n{run.stdout[-5000:]}\n{run.stderr[-1000:]}\n"
                                         f"{journals(hosts.hosts)}")
            print(f"{attempt} deploy: {time.monotonic() - began:.1f} s")
        yield hosts, tmp
    finally:
        hosts.close()


def test_second_run_changes_nothing(cluster: tuple[Hosts, Path]) -> None:
    out = (cluster[1] / "ansible-second.log").read_text()
    counts = recap(out)
    assert set(counts) >= {"h1", "h2", "h3", "localhost"}
    assert {h: c["changed"] for h, c in counts.items()} == dict.fromkeys(counts, 0), out[-4000:]


def test_every_unit_is_active(cluster: tuple[Hosts, Path]) -> None:
    h1, h2, h3 = cluster[0].hosts
    expected = [(h1, ["schedctl.target", "schedctl-coordinator.service"]),
                (h2, ["schedctl.target", "schedctl-node.service"]),
                (h3, ["schedctl.target", "schedctl-node.service"])]
    for host, units in expected:
        states = host.systemctl("is-active", *units, check=False).split()
        assert states == ["active"] * len(units), f"{host.name}: {dict(zip(units, states, strict=False))}"
        assert host.systemctl("is-enabled", *units).split() == ["enabled"] * len(units)
    assert "serving on" in h2.show("schedctl-node.service", "StatusText") or \
        "ready" in h2.show("schedctl-node.service", "StatusText")
    assert (cluster[1] / "keys/cluster.toml").read_text().count("[[nodes]]") == 2
    # CURVE is on: a secret is private to the daemons' user, the config names it
    assert h2.run("stat", "-c", "%a %U", "/etc/schedctl/curve/client.key_secret").stdout.split() == ["600", "schedctl"]
    assert "[security]" in h2.run("cat", "/etc/schedctl/schedctl.toml").stdout


def test_nodes_launch_their_tgi_instances_themselves(cluster: tuple[Hosts, Path]) -> None:
    """No standing backend unit; the preloaded model runs under text-generation-launcher as a
    child of the node agent, inside the node's unit, with the flags the README documents."""
    for host in cluster[0].hosts[1:]:
        config = host.run("cat", "/etc/schedctl/schedctl.toml").stdout
        assert 'backend = "tgi"' in config and 'tgi_launcher = "/opt/schedctl/bin/text-generation-launcher"' in config
        standing = host.systemctl("list-units", "--no-legend", "--all", "emulator@*", "tgi@*", check=False)
        assert standing.strip() == "", standing
        began, pids = time.monotonic(), []
        while not pids and time.monotonic() - began < 60:
            pids = host.run("pgrep", "-f", f"text-generation-launcher --model-id {MODEL}", check=False).stdout.split()
            time.sleep(0.5)
        assert pids, f"{host.name}: no text-generation-launcher running\n{journals([host])}"
        cmdline = host.run("cat", f"/proc/{pids[0]}/cmdline").stdout.replace("\0", " ")
        for flag in ("--port", "--hostname 127.0.0.1", "--num-shard 1", "--shard-uds-path", "--master-port",
                     "--cuda-memory-fraction"):
            assert flag in cmdline, cmdline
        assert "schedctl-node.service" in host.run("cat", f"/proc/{pids[0]}/cgroup").stdout


def test_load_runs_and_one_request_is_found_in_the_logs(cluster: tuple[Hosts, Path]) -> None:
    hosts = cluster[0].hosts
    h1 = hosts[0]
    schedule = "/var/lib/schedctl/loadgen/smoke.csv"
    h1.run("/opt/schedctl/venv/bin/schedctl", "loadgen", "plan", "--duration", "5", "--rps", "4", "--cv", "1",
           "--models", MODEL, "--prompt-tokens", "32", "--output-tokens", "8", "-o", schedule)
    h1.run("chown", "schedctl:schedctl", schedule)
    h1.systemctl("start", "--wait", "schedctl-loadgen@smoke.service")  # returns when the run has ended
    assert h1.show("schedctl-loadgen@smoke.service", "Result") == "success"
    rows = list(csv.DictReader(io.StringIO(h1.run("cat", "/var/lib/schedctl/loadgen/smoke.requests.csv").stdout)))
    assert len(rows) == 20
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 20, [(r["request_id"], r["status"], r["error"], r["error_detail"]) for r in rows]
    assert {r["node"] for r in ok} <= {"h2", "h3"}

    rid, node = ok[-1]["request_id"], ok[-1]["node"]
    dirs = [arg for h in hosts for arg in ("--root", h.root)]
    out = sh(str(BIN / "schedctl"), "logs", "--request-id", rid, *dirs, "--json").stdout
    entries = [json.loads(line) for line in out.splitlines()]
    assert entries, f"no journal entry carries SCHEDCTL_REQUEST_ID={rid}"
    assert all(e["SCHEDCTL_REQUEST_ID"] == rid for e in entries)
    serving = [e for e in entries if e.get("_SYSTEMD_UNIT") == "schedctl-node.service"]
    assert serving and serving[0]["SCHEDCTL_NODE"] == node and serving[0]["SCHEDCTL_MODEL"] == MODEL
    assert serving[0]["SCHEDCTL_ACTION"] in ("SERVE", "SERVE_LOADING", "COLD_START")
    text = sh(str(BIN / "schedctl"), "logs", "--request-id", rid, "--node", node, *dirs).stdout
    assert rid in text and f"node={node}" in text


def wait_restarted(host: Host, unit: str, old_pid: str, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        pid = host.show(unit, "MainPID")
        if pid not in ("0", old_pid) and host.systemctl("is-active", unit, check=False) == "active":
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"{unit} on {host.name} not back within {timeout:.0f} s: "
                         f"{host.systemctl('status', unit, check=False)[-1500:]}")


def test_kill_9_node_is_restarted(cluster: tuple[Hosts, Path]) -> None:
    h2 = cluster[0].hosts[1]
    unit = "schedctl-node.service"
    pid, restarts = h2.show(unit, "MainPID"), int(h2.show(unit, "NRestarts"))
    h2.run("kill", "-9", pid)
    took = wait_restarted(h2, unit, pid, 30)
    assert int(h2.show(unit, "NRestarts")) == restarts + 1
    print(f"node restarted {took:.1f} s after SIGKILL")


def test_stopped_event_loop_trips_the_watchdog(cluster: tuple[Hosts, Path]) -> None:
    h3 = cluster[0].hosts[2]
    unit = "schedctl-node.service"
    pid = h3.show(unit, "MainPID")
    assert h3.show(unit, "WatchdogUSec") not in ("0", "infinity")
    h3.run("kill", "-STOP", pid)
    took = wait_restarted(h3, unit, pid, 60)
    log = h3.run("journalctl", "--no-pager", "-u", unit, "-o", "cat").stdout
    assert "Watchdog timeout" in log
    print(f"watchdog restarted the frozen node after {took:.1f} s")


DEPLOYED_FAULTS = """
[experiment]
name = "deployed_faults"
timeout_s = 60
attempt_timeout_s = 6
faults = ["3:partition:node-1:5", "11:kill:node-0"]
[workload]
duration_s = 16
rps = 2
cv = 1
seed = 3
models = ["{model}"]
prompt_tokens = "lognormal:mean=32,median=32,max=64"
output_tokens = "lognormal:mean=8,median=8,max=16"
"""


def test_faults_run_on_the_deployed_hosts(cluster: tuple[Hosts, Path]) -> None:
    """`--fault` with --cluster: a partition (nftables on h3) and a kill -9 (systemctl kill on h2),
    through Ansible with the deployment's inventory; nothing is lost and the coordinator sees both."""
    hosts, tmp = cluster
    config = tmp / "faults.toml"
    config.write_text(DEPLOYED_FAULTS.format(model=MODEL))
    out = subprocess.run([str(BIN / "schedctl"), "experiment", "run", "-c", str(config), "--cluster",
                          str(tmp / "keys/cluster.toml"), "--results-dir", str(tmp / "results")],
                         cwd=tmp, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run_dir,) = (tmp / "results").iterdir()
    requests = csv_rows(run_dir / "requests.csv")
    assert len(requests) == 32 and all(r["status"] == "ok" for r in requests), \
        [(r["request_id"], r["error"], r["error_detail"]) for r in requests if r["status"] != "ok"]
    events = csv_rows(run_dir / "events.csv")
    kinds = [(e["kind"], e["target"]) for e in events]
    assert ("fault", "h3") in kinds and ("healed", "h3") in kinds and ("fault", "h2") in kinds, events
    assert not [e for e in events if e["kind"] == "injection_failed"], events
    first: dict[tuple[str, str], float] = {}
    for e in events:
        first.setdefault((e["kind"], e["target"]), float(e["t_s"]))
    assert first[("node_dead", "h3")] - first[("fault", "h3")] <= 3.0 + 1.0 + 1.0  # dead_after 3 s + a beat
    assert first[("node_recovered", "h3")] > first[("fault", "h3")] + 5.0  # back once the 5 s cut is over
    assert first[("node_restarted", "h2")] > first[("fault", "h2")]  # systemd brought it back, a new generation
    assert "schedctl_fault" not in hosts.hosts[2].run("nft", "list", "tables", check=False).stdout  # healed


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


HYBRID = """
[experiment]
name = "deployed_hybrid"
scheduler = "hybrid"
timeout_s = 60
[workload]
duration_s = 4
rps = 2
cv = 1
seed = 5
models = ["{model}"]
prompt_tokens = "lognormal:mean=32,median=32,max=64"
output_tokens = "lognormal:mean=8,median=8,max=16"
"""


def test_a_hybrid_deployment_runs_the_hybrid_arm(cluster: tuple[Hosts, Path]) -> None:
    """Last (it redeploys): `schedctl_scheduler: hybrid` turns the nodes into gossip peers of
    their coordinator over CURVE; `experiment run --cluster --scheduler hybrid` sends to them."""
    hosts, tmp = cluster
    inv = tmp / "inventory.yml"
    run = playbook(inv, tmp, schedctl_scheduler="hybrid")
    (tmp / "ansible-hybrid.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"{run.stdout[-5000:]}\n{run.stderr[-1000:]}\n{journals(hosts.hosts)}"
    assert 'scheduler = "hybrid"' in (tmp / "keys/cluster.toml").read_text()
    config = tmp / "hybrid.toml"
    config.write_text(HYBRID.format(model=MODEL))
    out = subprocess.run([str(BIN / "schedctl"), "experiment", "run", "-c", str(config), "--cluster",
                          str(tmp / "keys/cluster.toml"), "--results-dir", str(tmp / "hybrid")],
                         cwd=tmp, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + journals(hosts.hosts)
    (run_dir,) = (tmp / "hybrid").iterdir()
    requests = csv_rows(run_dir / "requests.csv")
    assert len(requests) == 8 and all(r["status"] == "ok" for r in requests), requests
    assert {r["node"] for r in requests} <= {"h2", "h3"}
    # the model is preloaded everywhere: the peers place every request (never degraded)
    assert {r["decided_by"] for r in requests} <= {"peer", "coordinator"}, requests
    assert "hybrid_degraded" not in (run_dir / "events.csv").read_text()
    # each peer hears its coordinator over CURVE: its model maps arrive, it never went degraded
    for endpoint in (n["endpoint"] for n in tomllib.loads((tmp / "keys/cluster.toml").read_text())["nodes"]):
        status = sh(str(BIN / "schedctl"), "status", "--node", endpoint, "--cluster", str(tmp / "keys/cluster.toml"),
                    "--json").stdout
        info = json.loads(status)["info"]
        assert info["maps"] >= 1 and not info["degraded"] and info["degraded_spells"] == 0, info
