"""Samples the host's CPU and the run's process tree once a second, for host.csv.

The columns and what they mean are in daemons/rundir/hosts.py, which writes the file. The
run's processes are this process (the runner: load generator, collector) and every
descendant (coordinators, nodes and the engines they start), found afresh each second so
restarts count. Their CPU use is the growth of each process's user + system time between two
samples: a process first seen in a sample was started since the previous one and counts
with all its time so far; a process gone by the next sample loses its last partial
second (psutil cannot read a reaped process). A daemon thread; samples are bounded
(MAX_ROWS, the oldest dropped) and carry Unix time until `write()` makes them relative to
the load generator's t = 0, like the collector's.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from daemons.rundir import HOSTS, HostSample, write_hosts

INTERVAL_S = 1.0
MAX_ROWS = 86_400  # a day of seconds: no run is that long, and memory stays bounded

ProcessKey = tuple[int, float]  # (pid, create time): a reused pid is another process


def cpu_growth(before: Mapping[ProcessKey, float], after: Mapping[ProcessKey, float]) -> float:
    """CPU seconds the processes of `after` used since `before` (new ones: all their time)."""
    return sum(max(0.0, used - before.get(key, 0.0)) for key, used in after.items())


def tree_cpu(root: psutil.Process) -> tuple[dict[ProcessKey, float], dict[ProcessKey, float]]:
    """CPU seconds (user + system) of `root` and, separately, of each of its descendants."""
    own: dict[ProcessKey, float] = {}
    kids: dict[ProcessKey, float] = {}
    try:
        children = root.children(recursive=True)
    except psutil.Error:
        children = []
    for proc, into in [(root, own), *((c, kids) for c in children)]:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                into[(proc.pid, proc.create_time())] = times.user + times.system
        except psutil.Error:  # exited (or became a zombie) since it was listed
            continue
    return own, kids


@dataclass
class HostSampler:
    """host.csv's rows for the run of this process; start() and stop() bracket the run."""

    root_pid: int = field(default_factory=os.getpid)
    interval_s: float = INTERVAL_S
    rows: deque[HostSample] = field(default_factory=lambda: deque(maxlen=MAX_ROWS))  # t_s: Unix time
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="host-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        root = psutil.Process(self.root_pid)
        cores = psutil.cpu_count() or 1
        psutil.cpu_percent(None)  # the first call only starts psutil's interval
        own, kids = tree_cpu(root)
        last = time.monotonic()
        due = last + self.interval_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            new_own, new_kids = tree_cpu(root)
            now = time.monotonic()
            # A fixed rate (the time a sample takes does not add up); after a stall, no burst to catch up.
            due = max(due + self.interval_s, now + self.interval_s / 2)
            capacity = max(now - last, 1e-6) * cores  # CPU seconds the host could give
            # Capped at the whole host: CPU times tick in 10 ms steps, a full second may read 1.01.
            daemons = min(1.0, cpu_growth(kids, new_kids) / capacity)
            ours = min(1.0, daemons + cpu_growth(own, new_own) / capacity)
            # Four decimals: a hundredth of a percent is below what 10 ms CPU ticks resolve.
            self.rows.append(HostSample(time.time(), round(psutil.cpu_percent(None) / 100.0, 4), round(ours, 4),
                                        round(daemons, 4), len(new_own) + len(new_kids)))
            own, kids, last = new_own, new_kids, now

    def write(self, run_dir: Path, t0_wall: float, end_s: float) -> Path:
        """host.csv for 0 <= t <= end_s (the run itself, as nodes.csv)."""
        samples = [dataclasses.replace(s, t_s=round(s.t_s - t0_wall, 3)) for s in list(self.rows)]
        write_hosts(run_dir / HOSTS, [s for s in samples if 0 <= s.t_s <= end_s])
        return run_dir / HOSTS
