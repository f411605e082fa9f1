"""The host sampler: CPU growth of a process tree, and a real sampler watching a busy child."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from cli.experiment.host_sampler import HostSampler, cpu_growth
from daemons.rundir import HOST_COLUMNS, HOSTS, read_hosts


def test_cpu_growth() -> None:
    before = {(1, 0.0): 1.0, (2, 0.0): 2.0, (9, 0.0): 5.0}
    # pid 1 used 0.5 s more; pid 2 is a new process (another create time): all its 0.25 s; 9 is gone.
    after = {(1, 0.0): 1.5, (2, 7.0): 0.25}
    assert cpu_growth(before, after) == 0.75
    assert cpu_growth({(1, 0.0): 2.0}, {(1, 0.0): 1.0}) == 0  # never negative


def test_sampler_sees_a_busy_child(tmp_path: Path) -> None:
    sampler = HostSampler(interval_s=0.5)
    t0 = time.time()
    sampler.start()
    spin = "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        busy.wait(30)
        time.sleep(0.6)
    finally:
        busy.kill()
        busy.wait()
        sampler.stop()
    path = sampler.write(tmp_path, t0, end_s=60)
    assert path == tmp_path / HOSTS
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(HOST_COLUMNS) and len(rows) >= 4
    for r in rows:
        assert 0 <= float(r["t_s"]) <= 60
        assert 0 <= float(r["daemons_cpu"]) <= float(r["schedctl_cpu"]) <= 1.0
        assert 0 <= float(r["host_cpu"]) <= 1.0 and int(r["processes"]) >= 1
    # The child spun for 2.5 s (its last partial interval is lost when it is reaped): even on a
    # shared, loaded host the samples add up to a good part of that in CPU seconds.
    cpu_s = sum(float(r["daemons_cpu"]) for r in rows) * 0.5 * (os.cpu_count() or 1)
    assert 0.25 < cpu_s < 3.5
    assert any(int(r["processes"]) >= 2 for r in rows)
    # and the report's reader gets the same samples back
    samples = read_hosts(path)
    assert [s.t_s for s in samples] == [float(r["t_s"]) for r in rows]
    assert [s.processes for s in samples] == [int(r["processes"]) for r in rows]
