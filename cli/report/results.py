"""One results directory, loaded for the report: everything `schedctl experiment run` wrote.

The files, their columns and their readers are daemons/rundir (one definition for the
writers and the report). Only the columns the report uses are required; extra columns are
ignored so the runner can add fields without breaking old reports. A missing file, a
missing column or a cell that is not a number is a ConfigError naming the file, the line
and the fix.

recovery.csv is derived (cli/report/recovery.py): `write_report` writes it before loading,
and a directory without one (written before recovery.csv existed, or by hand) gets its
recoveries computed here, from the same requests and events, without writing anything.
host.csv is optional: a run written before the host sampler existed has no host samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli.report.recovery import recoveries
from daemons.core.errors import ConfigError
from daemons.rundir import (
    EVENTS,
    HOSTS,
    MANIFEST,
    NODES,
    RECOVERY,
    REQUESTS,
    Event,
    HostSample,
    Manifest,
    NodeSample,
    Recovery,
    RequestRow,
    read_events,
    read_hosts,
    read_manifest,
    read_nodes,
    read_recoveries,
    read_requests,
)

# Every action a node reports for a request it served (daemons/node/actions.py);
# only SERVE is a cache hit: the model was ready when the request reached the node.
ACTIONS = ("SERVE", "SERVE_LOADING", "COLD_START", "MIGRATE")
CACHE_HITS = ("SERVE",)


@dataclass(frozen=True)
class RunData:
    """Everything in one results directory."""

    run_dir: Path
    manifest: Manifest
    requests: tuple[RequestRow, ...]
    nodes: tuple[NodeSample, ...]
    events: tuple[Event, ...]
    recoveries: tuple[Recovery, ...]  # one per fault, in fault order
    hosts: tuple[HostSample, ...]  # () when the run has no host.csv (it predates the sampler)


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such results directory; pass a directory under results/ "
                          "written by `schedctl experiment run`")


def load_run(run_dir: Path) -> RunData:
    """Read and validate the files of a results directory."""
    check_run_dir(run_dir)
    manifest = read_manifest(run_dir / MANIFEST)
    requests = tuple(read_requests(run_dir / REQUESTS))
    events = tuple(read_events(run_dir / EVENTS))
    found = read_recoveries(run_dir / RECOVERY) if (run_dir / RECOVERY).is_file() else recoveries(requests, events)
    hosts = read_hosts(run_dir / HOSTS) if (run_dir / HOSTS).is_file() else []
    return RunData(run_dir, manifest, requests, tuple(read_nodes(run_dir / NODES)), events, tuple(found),
                   tuple(hosts))
