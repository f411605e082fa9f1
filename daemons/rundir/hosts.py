"""host.csv: the CPU of the machine that ran the experiment, and of the run's processes, each second.

Written by `schedctl experiment run`'s host sampler (cli/experiment/host_sampler.py);
times are seconds from the load generator's t = 0, like nodes.csv. Every utilisation is a
fraction 0..1 of the *whole host* (all its cores):

    t_s           seconds from t = 0
    host_cpu      busy fraction of every CPU of the host (psutil.cpu_percent / 100)
    schedctl_cpu  CPU time of the run's process tree (the runner: load generator,
                  collector; and every process it started: coordinators, nodes, their
                  engines) over the second, divided by the host's CPU count
    daemons_cpu   the same for the started processes only (the runner left out)
    processes     how many processes the tree held

Whether the host was saturated (and what that means for the run's figures) is the
report's rule: cli/report/host.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemons.rundir.cells import NAN, Row, read_rows, write_rows

HOSTS = "host.csv"

HOST_COLUMNS = ("t_s", "host_cpu", "schedctl_cpu", "daemons_cpu", "processes")
HOST_REQUIRED = ("t_s", "host_cpu")


@dataclass(frozen=True)
class HostSample:
    """One second of the host's CPU (fractions 0..1 of all cores; NaN or None: not known)."""

    t_s: float
    host_cpu: float
    schedctl_cpu: float = NAN
    daemons_cpu: float = NAN
    processes: int | None = None


def write_hosts(path: str | Path, samples: Iterable[HostSample]) -> None:
    """Write host.csv (HOST_COLUMNS) at `path`."""
    write_rows(path, HOST_COLUMNS, samples)


def read_hosts(path: Path) -> list[HostSample]:
    """Read host.csv in file order; only HOST_REQUIRED columns must be present."""
    return [_sample(row) for row in read_rows(path, HOST_REQUIRED)]


def _sample(row: Row) -> HostSample:
    return HostSample(
        t_s=row.number("t_s", required=True),
        host_cpu=row.number("host_cpu"),
        schedctl_cpu=row.number("schedctl_cpu"),
        daemons_cpu=row.number("daemons_cpu"),
        processes=row.count("processes"),
    )
