"""Real systemd hosts for tests: systemd-nspawn over the host's /usr (systemd-nspawn(1)).

Each host boots the machine's own /usr read-only with a tmpfs root (`--volatile=yes`), in
its own network namespace with its own address on a private bridge that only this test
creates. Everything made here is undone by `Hosts.close()`, which is safe to call after
any partial start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BOOT_TIMEOUT_S = 60.0


def why_not_runnable() -> str | None:
    """None if nspawn hosts can run here, else the reason (used as the skip message)."""
    if os.geteuid() != 0:
        return "systemd-nspawn hosts need root"
    for tool in ("systemd-nspawn", "ip", "nsenter", "journalctl"):
        if shutil.which(tool) is None:
            return f"{tool} not found (bash scripts/ci-system-deps.sh installs it)"
    probe = f"schedctl-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip() or out.stdout.strip()}")
    return out


@dataclass
class Host:
    name: str
    netns: str
    address: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _pid1: int = 0

    @property
    def pid1(self) -> int:
        """PID (on the outer host) of the container's systemd: the nspawn process's child."""
        if not self._pid1:
            assert self.proc is not None
            for child in psutil.Process(self.proc.pid).children():
                if child.name() == "systemd":
                    self._pid1 = child.pid
        return self._pid1

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host (all its namespaces)."""
        return sh("nsenter", "-t", str(self.pid1), "-a", *cmd, check=check, timeout=timeout)

    def systemctl(self, *args: str, check: bool = True) -> str:
        return self.run("systemctl", "--no-pager", *args, check=check).stdout.strip()

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit)

    @property
    def root(self) -> str:
        """The host's file system as seen from outside (journalctl --root reads its journals)."""
        return f"/proc/{self.pid1}/root"


@dataclass
class Hosts:
    """Boot `count` hosts on one private bridge; `close()` powers off and removes everything."""

    count: int
    workdir: Path
    binds: list[tuple[Path, str]] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = os.getpid() % 10000
        self.bridge = f"scbr{tag}"
        self.subnet = f"10.231.{tag % 250 + 1}"
        self.hosts = [Host(f"h{i}", f"schedctl-{tag}-h{i}", f"{self.subnet}.{10 + i}", self.workdir / f"h{i}.log")
                      for i in range(1, self.count + 1)]

    def start(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, host in enumerate(self.hosts, 1):
            veth = f"{self.bridge}v{i}"
            sh("ip", "netns", "add", host.netns)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
            sh("ip", "-n", host.netns, "link", "set", "lo", "up")
        for host in self.hosts:
            self._boot(host)
        for host in self.hosts:
            self._wait_running(host)

    def _boot(self, host: Host) -> None:
        binds = [f"--bind-ro={src}:{dst}" for src, dst in self.binds]
        cmd = ["systemd-nspawn", "-D", "/", "--volatile=yes", "--register=no", "--keep-unit", "-M", host.name,
               f"--network-namespace-path=/run/netns/{host.netns}", *binds, "-b", "--",
               "systemd.firstboot=off", "systemd.mask=nftables.service",
               # boot only to basic.target: services that the machine's /usr happens to carry
               # (databases, getty, cron) are not under test and would take CPU from ours
               "systemd.unit=basic.target"]
        with open(host.log_path, "wb") as log:
            host.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def _wait_running(self, host: Host) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            assert host.proc is not None
            if host.proc.poll() is not None:
                raise AssertionError(f"{host.name} exited while booting: {host.log_path.read_text()[-2000:]}")
            if host.pid1 and Path(f"/proc/{host.pid1}/root/run/systemd/private").exists():
                state = host.run("systemctl", "is-system-running", "--wait", check=False, timeout=BOOT_TIMEOUT_S)
                if state.stdout.strip() in ("running", "degraded"):
                    return
            time.sleep(0.1)
        raise AssertionError(f"{host.name} did not boot within {BOOT_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None and host.pid1:
                host.run("systemctl", "poweroff", "--no-block", check=False, timeout=10)
        for host in self.hosts:
            if host.proc is None:
                continue
            try:
                host.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                host.proc.kill()  # our own nspawn process; its container goes with it
                host.proc.wait(timeout=10)
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
