"""The results directory of one run: its files, their columns, typed rows, writers and readers.

`schedctl experiment run` writes one directory per scheduler,
`results/<name>_<scheduler>_<YYYYmmdd_HHMMSS>/`:

    schedule.csv    the planned requests, replayed by every scheduler (daemons/loadgen/schedule.py)
    requests.csv    one row per planned request and its outcome        (requests.py)
    nodes.csv       every node's telemetry, once a second              (nodes.py)
    host.csv        the host's and the run's CPU, once a second        (hosts.py)
    events.csv      faults, detections, failovers                      (events.py)
    manifest.json   what was run: config, seed, versions               (manifest.py)
    recovery.csv    per fault: detection, drain, recovery (derived)    (recovery.py)
    summary.csv     the run's aggregate figures (derived; cli/report/summary.py)
    *.png           the plots (derived; cli/report/plots.py)
    error.txt       only when the run failed: the traceback
    daemons/        the daemons' configs and logs (local clusters)

The load generator, the collector and the report all go through this package, so a
column is named in one place. It is the standard library only (no sockets, no numpy):
daemons and CLI alike can import it. Cell rules (empty = did not happen, lists `;`-joined,
file:line errors on reading) are in cells.py.
"""

from daemons.rundir.cells import FIX
from daemons.rundir.events import EVENT_COLUMNS, EVENTS, FAULT, Event, detail_fields, read_events, write_events
from daemons.rundir.hosts import HOST_COLUMNS, HOSTS, HostSample, read_hosts, write_hosts
from daemons.rundir.manifest import MANIFEST, Manifest, Slo, read_manifest, write_manifest
from daemons.rundir.nodes import NODE_COLUMNS, NODES, NodeSample, read_nodes, write_nodes
from daemons.rundir.recovery import RECOVERY, RECOVERY_COLUMNS, Recovery, read_recoveries, write_recoveries
from daemons.rundir.requests import (
    ERROR,
    NOT_SENT,
    OK,
    REQUEST_COLUMNS,
    REQUESTS,
    SHED,
    TIMEOUT,
    RequestRow,
    read_requests,
    write_requests,
)

__all__ = [
    "ERROR",
    "EVENTS",
    "EVENT_COLUMNS",
    "FAULT",
    "FIX",
    "HOSTS",
    "HOST_COLUMNS",
    "MANIFEST",
    "NODES",
    "NODE_COLUMNS",
    "NOT_SENT",
    "OK",
    "RECOVERY",
    "RECOVERY_COLUMNS",
    "REQUESTS",
    "REQUEST_COLUMNS",
    "SHED",
    "TIMEOUT",
    "Event",
    "HostSample",
    "Manifest",
    "NodeSample",
    "Recovery",
    "RequestRow",
    "Slo",
    "detail_fields",
    "read_events",
    "read_hosts",
    "read_manifest",
    "read_nodes",
    "read_recoveries",
    "read_requests",
    "write_events",
    "write_hosts",
    "write_manifest",
    "write_nodes",
    "write_recoveries",
    "write_requests",
]
