"""The local cluster's life: endpoints nobody can take, no orphan however the run dies,
and a failed arm that keeps what finished (issue 10 item 3, issue 11 item 4)."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cli.experiment.cluster import LocalCluster
from cli.experiment.spec import MODELS, ExperimentSpec, NodeGroup
from daemons.bus import activation
from daemons.bus.client import Client
from daemons.core.process import DaemonProcess
from daemons.core.sdnotify import parse_endpoints
from daemons.node.testing import schedctl


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def start_run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([schedctl(), "experiment", "run", "--results-dir", str(tmp_path / "r"), *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines_until(proc: subprocess.Popen[str], needle: str) -> Iterator[str]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield line
        if needle in line:
            return
    raise AssertionError(f"the run ended before printing {needle!r}: {proc.wait()}")


def daemons_of(proc: subprocess.Popen[str], count: int, timeout_s: float = 60) -> list[psutil.Process]:
    """The run's `schedctl start ...` children, once `count` of them run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = [k for k in psutil.Process(proc.pid).children(recursive=True) if "start" in k.cmdline()]
        if len(kids) >= count:
            return kids
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} daemons started")


# ----- endpoints ------------------------------------------------------------------------------
def test_a_handed_down_endpoint_is_held_before_the_daemon_starts_and_served_by_it(tmp_path: Path) -> None:
    held = [activation.listen() for _ in range(2)]
    bind, state = (activation.endpoint_of(s) for s in held)
    # Held from the moment it was chosen: nobody else can bind it, before or while the daemon starts.
    thief = socket.socket()
    with pytest.raises(OSError):
        thief.bind(("127.0.0.1", held[0].getsockname()[1]))
    thief.close()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    env = {**activation.child_env(held), "NOTIFY_SOCKET": str(tmp_path / "notify")}
    # The events socket binds a port the kernel picks: READY=1 reports which.
    argv = [schedctl(), "start", "coordinator", "--bind", bind, "--state-bind", state,
            "--events-bind", "tcp://127.0.0.1:*"]
    try:
        with DaemonProcess(argv, env=env, hand_down=held, log_path=tmp_path / "coordinator.log"):
            datagram = notify.recv(4096).decode()
            assert "READY=1" in datagram
            bound = parse_endpoints(datagram)
            assert bound["bind"] == bind and bound["state_bind"] == state
            assert bound["events_bind"].startswith("tcp://127.0.0.1:") and not bound["events_bind"].endswith(":*")
            with Client(bind) as client:
                assert client.status(10).role == "coordinator"
    finally:
        notify.close()


@pytest.mark.slow
def test_sixteen_nodes_start_every_time_while_others_grab_ports(tmp_path: Path) -> None:
    """The race of issue 10: endpoints picked free and bound later. A thread binds and releases
    ephemeral ports all the time, as a busy host does; no start may fail."""
    stop = threading.Event()

    def grab() -> None:
        while not stop.is_set():
            socks = [socket.socket() for _ in range(50)]
            for s in socks:
                s.bind(("127.0.0.1", 0))
            time.sleep(0.001)
            for s in socks:
                s.close()

    thief = threading.Thread(target=grab, daemon=True)
    thief.start()
    spec = ExperimentSpec(nodes=(NodeGroup(count=16, gpu="a100-80gb", models=MODELS),))
    try:
        for i in range(3):
            cluster = LocalCluster(spec, "centralized", tmp_path / f"run{i}", activation.endpoint_of(
                held := activation.listen()))
            try:
                cluster.start()  # raises ClusterError if any daemon failed to bind or start
                assert len(cluster.node_endpoints) == 16
            finally:
                cluster.stop()
                held.close()
    finally:
        stop.set()
        thief.join(5)


# ----- no orphans ---------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_of_the_run_takes_every_daemon_with_it(tmp_path: Path) -> None:
    proc = start_run(tmp_path, "--duration", "60", "--rps", "1", "--cv", "1", "--scheduler", "gossip")
    try:
        for _ in lines_until(proc, "running"):
            pass
        kids = daemons_of(proc, 4)
        time.sleep(2)  # serving: backend instances started too
        everything = psutil.Process(proc.pid).children(recursive=True)
        assert len(everything) >= len(kids)
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup runs in the launcher
        proc.wait()
    _, alive = psutil.wait_procs(everything, timeout=10)
    for p in alive:
        p.kill()
    assert alive == [], [p.pid for p in alive]


@pytest.mark.slow
def test_sigint_marks_the_run_interrupted_and_unsent_requests_not_sent(tmp_path: Path) -> None:
    proc = start_run(tmp_path, "--duration", "40", "--rps", "2", "--cv", "1", "--scheduler", "centralized",
                     "--seed", "3")
    try:
        for _ in lines_until(proc, "running"):
            pass
        time.sleep(4)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "not_sent" in err
    # One scheduler ran: its own summary, not a comparison with an empty column.
    assert "COMPARISON REPORT" not in out and "scheduler centralized" in out
    (run_dir,) = (tmp_path / "r").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["interrupted"] is True
    records = rows(run_dir / "requests.csv")
    assert len(records) == 80  # every planned request has one row
    not_sent = [r for r in records if r["status"] == "not_sent"]
    sent = [r for r in records if r["status"] != "not_sent"]
    assert len(not_sent) > 40 and sent
    assert all(r["sent_s"] == "" for r in not_sent) and all(r["sent_s"] != "" for r in sent)
    (summary,) = rows(run_dir / "summary.csv")
    assert summary["interrupted"] == "True" and int(summary["not_sent_count"]) == len(not_sent)
    # not_sent is no failure: the success rate is over the requests that were sent
    ok = sum(1 for r in sent if r["status"] == "ok")
    assert int(summary["failed_requests"]) == len(sent) - ok
    assert float(summary["success_rate"]) == pytest.approx(ok / len(sent))


# ----- a failed arm --------------------------------------------------------------------------
@pytest.mark.slow
def test_a_failing_second_arm_keeps_the_first_arms_summary_and_report(tmp_path: Path) -> None:
    proc = start_run(tmp_path, "--duration", "3", "--rps", "2", "--cv", "1", "--nodes", "2", "--seed", "5",
                     "--name", "arms")
    try:
        printed = list(lines_until(proc, "[gossip] starting"))
        first = daemons_of(proc, 1)[0]  # the second arm's first node dies while its cluster starts
        first.kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(printed) + out
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err
    (line,) = [e for e in err.splitlines() if e.startswith("error:")]
    assert "gossip run failed" in line and "error.txt" in line
    dirs = {d.name.split("_")[1]: d for d in (tmp_path / "r").iterdir()}
    central = dirs["centralized"]
    for name in ("summary.csv", "requests.csv", "manifest.json", "ttft_cdf.png"):
        assert (central / name).exists(), name
    assert "Metric" in out and "Centralized" in out  # the report of what finished
    assert (dirs["gossip"] / "error.txt").read_text()


# ----- bad inputs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\xab\xcd garbage \x00", "cannot read manifest"),
        (b'{"name": "left-pad", "version": "1.0.0"}', "not an experiment manifest"),
        (b'{"spec": {"experiment": {"slo": 3}}}', "[experiment.slo] must be a table"),
        (b'{"spec": {"experiment": [1, 2]}}', "[experiment] must be a table"),
        (b'{"spec": {"experiment": {"faults": [1, 2]}}}', "cannot be read"),
        (b'{"spec": {"nodes": [{"gpu": "tpu-v9"}]}}', "unknown GPU profile"),
        (b'{"spec": {"experiment": {"standby_coordinator": [1]}}}', "true or false"),
        (b'{"spec": {"experiment": {"gossip_preset": "moon"}}}', "lan, wan, local, ci"),
        (b'{"spec": {"experiment": {"retries": -1}}}', "retries -1 must be a whole number"),
        (b'{"spec": {"workload": {"duration_s": 5}, "experiment": {"faults": ["9:kill:node-1"]}}}',
         "after the last arrival"),
    ],
)
def test_a_corrupt_or_foreign_manifest_is_one_clear_line(tmp_path: Path, content: bytes, needle: str) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(content)
    out = subprocess.run([schedctl(), "experiment", "run", "--from", str(manifest), "--results-dir",
                          str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_fault_after_the_runs_end_is_refused_before_anything_starts(tmp_path: Path) -> None:
    out = subprocess.run([schedctl(), "experiment", "run", "--duration", "10", "--fault", "10:kill:node-1",
                          "--results-dir", str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: fault 10:kill:node-1: at 10 s it comes after the last arrival (10 s, "
                                  "--duration): schedule it earlier or raise --duration")
    assert not (tmp_path / "r").exists()

