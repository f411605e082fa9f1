"""The `partition` fault: parsing and refusals, the per-run network (cli/experiment/netns.py), and
short runs where node-1 is cut off for longer than the failure detectors wait, then reconnected.

The network tests need root and `ip netns` (CI runs as root; scripts/ci-system-deps.sh installs
iproute2); elsewhere they skip and say why. They touch only addresses of the namespaces they make.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.experiment import netns
from cli.experiment.faults import Fault, Injector, needs_netns, parse_fault
from cli.experiment.netns import Network
from cli.experiment.remote import RemoteCluster
from cli.experiment.runner import run_experiment
from cli.experiment.spec import ExperimentSpec, from_dict
from daemons.core.errors import ConfigError
from daemons.loadgen.schedule import read_schedule_csv
from daemons.node.testing import schedctl
from tests.experiment.test_faults import (
    COLLECTOR_BOUND_S,
    COORDINATOR_BOUND_S,
    EXPERIMENT,
    check_recovered,
    first,
    our_processes,
)


def _netns_reason() -> str:
    if os.geteuid() != 0:
        return "partition faults need root (network namespaces); run the tests as root"
    if shutil.which("ip") is None:
        return "partition faults need iproute2 (`ip`); apt-get install iproute2"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns list` fails here: no network namespace support"
    return ""


needs_root_netns = pytest.mark.skipif(bool(_netns_reason()), reason=_netns_reason() or "-")


# ----- parsing and refusals ---------------------------------------------------------------------

def test_partition_text_parses() -> None:
    assert parse_fault("4:partition:node-1:5") == Fault(4.0, "partition", "node-1", 5.0)
    assert parse_fault("4:partition:random-node:2.5s") == Fault(4.0, "partition", "random-node", 2.5)
    assert str(parse_fault("4:partition:node-1:5")) == "4:partition:node-1:5"
    assert needs_netns((parse_fault("4:partition:node-1:5"),))
    assert not needs_netns((parse_fault("4:pause:node-1:5"), parse_fault("5:kill:node-0")))


@pytest.mark.parametrize(("text", "says"), [
    ("4:partition:node-1", "DURATION > 0"),
    ("4:partition:node-1:0", "DURATION > 0"),
    ("4:partition:coordinator:5", "not the coordinator"),
    ("4:partition:gpu-1:5", "node-K or random-node"),
])
def test_bad_partition_is_a_config_error_naming_the_fix(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        parse_fault(text)
    assert text in str(err.value)


def test_a_partition_spec_builds_anywhere_and_round_trips() -> None:
    # The root check is the run's, not the spec's: a manifest with a partition reads back anywhere.
    spec = ExperimentSpec(faults=("4:partition:node-1:5",), schedulers=("gossip",))
    assert from_dict(spec.to_dict(), "manifest") == spec
    with pytest.raises(ConfigError, match=r"node-0\.\.node-3"):
        ExperimentSpec(faults=("4:partition:node-7:5",))
    # a deployed cluster partitions its hosts with nftables, through Ansible (hosts.py): its
    # cluster file must name the inventory
    ExperimentSpec(faults=("4:partition:node-1:5",), cluster_file="cluster.toml")
    with pytest.raises(ConfigError, match="names no inventory"):
        RemoteCluster(Path("cluster.toml")).cut("node-1", 5.0)


def test_without_root_the_run_refuses_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    spec = ExperimentSpec(faults=("4:partition:node-1:5",), results_dir=str(tmp_path / "results"))
    with pytest.raises(ConfigError, match="run as root or drop the partition fault"):
        run_experiment(spec, lambda _: None, lambda _: None)
    assert not (tmp_path / "results").exists()  # nothing started, nothing written


def test_without_ip_the_run_refuses_naming_iproute2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match=r"iproute2.*run as root or drop the partition fault"):
        netns.check_support()


class Recording:
    """A Target that records what the injector asks for, with the injector's clock."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def signal(self, name: str, sig: int) -> None:
        self.calls.append(("signal", name, time.monotonic()))

    def restart(self, name: str, downtime_s: float) -> None:
        self.calls.append(("restart", name, time.monotonic()))

    def cut(self, name: str, duration_s: float) -> None:
        self.calls.append(("cut", name, time.monotonic()))

    def heal(self, name: str) -> None:
        self.calls.append(("heal", name, time.monotonic()))


def test_injector_cuts_then_heals_and_records_both() -> None:
    target, events = Recording(), []
    injector = Injector([Fault(0.1, "partition", "node-1", 0.3), Fault(0.2, "kill", "node-0")], target,
                        lambda kind, who, detail: events.append((kind, who, detail)))
    injector.start(time.monotonic())
    time.sleep(0.8)
    injector.stop()
    assert [c[:2] for c in target.calls] == [("cut", "node-1"), ("signal", "node-0"), ("heal", "node-1")]
    assert target.calls[2][2] - target.calls[0][2] == pytest.approx(0.3, abs=0.1)  # the kill did not wait
    assert events == [("fault", "node-1", "kind=partition;duration_s=0.3"), ("fault", "node-0", "kind=kill"),
                      ("healed", "node-1", "kind=partition")]


def test_stopping_the_injector_heals_a_partition_in_progress() -> None:
    target, events = Recording(), []
    injector = Injector([Fault(0.0, "partition", "node-1", 60)], target, lambda *e: events.append(e[0]))
    injector.start(time.monotonic())
    time.sleep(0.2)
    started = time.monotonic()
    injector.stop()
    assert time.monotonic() - started < 2
    assert [c[0] for c in target.calls] == ["cut", "heal"] and events == ["fault", "healed"]


# ----- the network itself -----------------------------------------------------------------------

def ours(prefix: str) -> list[str]:
    """Namespaces and links whose name starts with `prefix`."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names += [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    return [n for n in names if n.startswith(prefix)]


LISTEN = "import socket,sys,time; s=socket.create_server((sys.argv[1], 5560)); print('up', flush=True); time.sleep(30)"
CONNECT = ("import socket,sys\ntry: socket.create_connection((sys.argv[1], 5560), timeout=0.5).close(); print('ok')\n"
           "except OSError: print('cut')")


def connects(network: Network, node: str, from_node: str = "") -> str:
    prefix = network.exec_prefix(from_node) if from_node else []
    out = subprocess.run([*prefix, sys.executable, "-c", CONNECT, network.address(node)], capture_output=True,
                         text=True, timeout=10)
    return out.stdout.strip()


@needs_root_netns
def test_cut_and_heal_a_node_then_close_removes_everything() -> None:
    network = Network.create(["node-0", "node-1"])
    listener = None
    try:
        assert ours(network.prefix) and network.subnet.subnet_of(netns.SUPERNET)
        listener = subprocess.Popen([*network.exec_prefix("node-1"), sys.executable, "-c", LISTEN,
                                     network.address("node-1")], stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "up"
        assert connects(network, "node-1") == "ok" and connects(network, "node-1", "node-0") == "ok"
        network.cut("node-1")
        network.cut("node-1")  # overlapping partitions nest: one heal is not enough
        assert connects(network, "node-1") == "cut" and connects(network, "node-1", "node-0") == "cut"
        network.heal("node-1")
        assert connects(network, "node-1") == "cut"
        network.heal("node-1")
        assert connects(network, "node-1") == "ok" and connects(network, "node-1", "node-0") == "ok"
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        network.close()
    assert ours(network.prefix) == []
    network.close()  # idempotent


@needs_root_netns
def test_a_killed_runs_leftovers_are_removed_by_the_next_run() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid nobody has now: the "killed experiment" whose network was left behind
    stale = f"sc{gone.pid}z"
    subprocess.run(["ip", "netns", "add", f"{stale}-n0"], check=True)
    subprocess.run(["ip", "link", "add", f"{stale}-br", "type", "bridge"], check=True)
    try:
        Network.create(["node-0"]).close()
        assert ours(stale) == []
    finally:
        for kind, name in (("netns", f"{stale}-n0"), ("link", f"{stale}-br")):
            subprocess.run(["ip", kind, "del", name], capture_output=True)


# ----- short runs on a real local cluster in namespaces ------------------------------------------

def start_run(tmp_path: Path, scheduler: str, faults: list[str], duration: float = 12) -> subprocess.Popen[str]:
    config = tmp_path / "exp.toml"
    faults_text = ", ".join(f'"{f}"' for f in faults)
    config.write_text(EXPERIMENT.format(scheduler=scheduler, nodes=2, duration=duration, faults=faults_text))
    return subprocess.Popen([schedctl(), "experiment", "run", "-c", str(config), "--results-dir",
                             str(tmp_path / "results")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def of_run(pid: int) -> list[str]:
    """The namespaces, veths and bridge of the experiment process `pid` (named `sc<pid><letter>-...`)."""
    return [n for n in ours(f"sc{pid}") if re.match(rf"sc{pid}[a-z]-", n)]


def check_left_nothing(pid: int, before: set[int]) -> None:
    """No process of the run, and no namespace, veth or bridge of it."""
    assert our_processes() <= before
    assert of_run(pid) == []


def run_partition(tmp_path: Path, scheduler: str) -> tuple[Path, list[dict[str, str]]]:
    before = our_processes()
    # Healed at 9 s; recovery is judged on trailing 10 s windows wholly after the fault
    # (cli/report/recovery.py): the run goes on a window past the heal, plus slack.
    proc = start_run(tmp_path, scheduler, ["4:partition:node-1:5"], duration=4 + 5 + 10 + 5)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-4000:]
    check_left_nothing(proc.pid, before)
    (run_dir,) = (tmp_path / "results").iterdir()
    # It really ran in namespaces: node-1 listened on its own address of the run's subnet.
    assert re.search(r'bind = "tcp://10\.213\.\d+\.11:5560"', (run_dir / "daemons" / "node-1.toml").read_text())
    planned = read_schedule_csv(run_dir / "schedule.csv")
    with open(run_dir / "requests.csv", newline="") as fh:
        recorded = list(csv.DictReader(fh))
    # zero lost: one row per planned request, each served, the cut ones by a retry elsewhere
    assert sorted(r["request_id"] for r in recorded) == sorted(p.request_id for p in planned)
    assert [r["status"] for r in recorded] == ["ok"] * len(planned), [r["error"] for r in recorded]
    with open(run_dir / "events.csv", newline="") as fh:
        events = list(csv.DictReader(fh))
    fault = first(events, "fault", "node-1")
    assert 3.9 <= fault <= 4.5
    assert first(events, "silent", "node-1") - fault <= COLLECTOR_BOUND_S
    healed = first(events, "healed", "node-1")
    assert healed >= fault + 5.0 - 0.01  # event times are rounded to ms
    assert first(events, "heard_again", "node-1") > healed  # its state flows again once reconnected
    check_recovered(run_dir, events)
    return run_dir, events


@pytest.mark.slow
@needs_root_netns
def test_partition_centralized_is_detected_heals_and_loses_nothing(tmp_path: Path) -> None:
    _, events = run_partition(tmp_path, "centralized")
    fault = first(events, "fault", "node-1")
    assert first(events, "node_dead", "node-1") - fault <= COORDINATOR_BOUND_S
    assert first(events, "node_recovered", "node-1") > first(events, "healed", "node-1")


@pytest.mark.slow
@needs_root_netns
def test_partition_gossip_is_detected_heals_and_loses_nothing(tmp_path: Path) -> None:
    run_partition(tmp_path, "gossip")


@pytest.mark.slow
@needs_root_netns
def test_ctrl_c_during_a_partition_removes_the_network(tmp_path: Path) -> None:
    before = our_processes()
    proc = start_run(tmp_path, "centralized", ["2:partition:node-1:30"])
    assert proc.stdout is not None
    lines: list[str] = []
    # Interrupt once the partition is in place (its "fault:" line, cli/experiment/progress.py,
    # follows the cut) and a second has passed: node-1 is cut off then.

    def read() -> None:
        for line in proc.stdout or []:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    while not any("fault: partition node-1" in line for line in lines) and proc.poll() is None:
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.1)
    time.sleep(1.0)
    assert len(of_run(proc.pid)) == 5  # the bridge, 2 namespaces, 2 veths
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130, "".join(lines)[-3000:]
    reader.join(5)
    check_left_nothing(proc.pid, before)
