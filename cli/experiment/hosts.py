"""Faults on a deployed cluster: commands run on its hosts through Ansible, as deployed.

The cluster file that deploy.yml writes names the inventory and the playbook folder, so
`ansible HOST -i INVENTORY -b -m shell` reaches each host the way the deployment did (ssh,
or whatever connection the inventory sets). The daemons are systemd units there:

- kill / pause / resume: the signal to the unit's main process, like the local cluster's
  (systemd's Restart=on-failure brings a killed daemon back after RestartSec, as in
  production);
- stop / restart: `systemctl stop` / `systemctl restart`;
- partition: an nftables table `inet schedctl_fault` that drops every packet in and out
  except loopback and ssh (port 22, so the heal can still reach the host), removed by the
  heal; a transient systemd timer on the host removes it too, DURATION + 30 s later, in
  case the controller is gone by then. Needs `nft` on the host.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from daemons.core.errors import SchedctlError

TABLE = "schedctl_fault"
PARTITION_RULES = f"""table inet {TABLE} {{
  chain input {{ type filter hook input priority -10; policy drop; iifname "lo" accept; tcp dport 22 accept; }}
  chain output {{ type filter hook output priority -10; policy drop; oifname "lo" accept; tcp sport 22 accept; }}
}}"""
HEAL = f"nft delete table inet {TABLE} 2>/dev/null || true"
SAFETY_MARGIN_S = 30


class HostError(SchedctlError):
    """A command on a deployed host failed."""


@dataclass(frozen=True)
class HostControl:
    ansible_dir: Path
    inventory: Path
    become: bool = True  # the deployment ran with --become (not needed where Ansible logs in as root)

    def run(self, host: str, command: str, timeout_s: float = 60) -> str:
        ansible = Path(sys.executable).parent / "ansible"
        exe = str(ansible) if ansible.exists() else shutil.which("ansible") or "ansible"
        try:
            out = subprocess.run([exe, host, "-i", str(self.inventory), *(["--become"] if self.become else []),
                                  "-m", "ansible.builtin.shell", "-a", command], cwd=self.ansible_dir,
                                 capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"{host}: cannot run {command!r} through ansible ({exc})") from None
        if out.returncode != 0:
            raise HostError(f"{host}: {command!r} failed (ansible exit {out.returncode}): "
                            f"{(out.stdout + out.stderr).strip()[-600:]}")
        return out.stdout

    def signal(self, host: str, unit: str, sig: int) -> None:
        if sig == signal.SIGTERM:
            self.run(host, f"systemctl stop {unit}")
        else:
            name = signal.Signals(sig).name.removeprefix("SIG")
            self.run(host, f"kill -s {name} \"$(systemctl show --property MainPID --value {unit})\"")

    def restart(self, host: str, unit: str, downtime_s: float) -> None:
        if downtime_s <= 0:
            self.run(host, f"systemctl restart {unit}")
        else:
            self.run(host, f"systemctl stop {unit} && sleep {downtime_s:g} && systemctl start {unit}",
                     timeout_s=60 + downtime_s)

    def cut(self, host: str, duration_s: float) -> None:
        safety = f"{int(duration_s) + SAFETY_MARGIN_S}s"
        self.run(host, f"{HEAL}; printf '%s\\n' '{PARTITION_RULES}' | nft -f - && "
                       f"systemd-run --collect --on-active={safety} /bin/sh -c '{HEAL}' >/dev/null")

    def heal(self, host: str) -> None:
        self.run(host, HEAL)
