"""events.csv: what happened to the cluster during the run, in time order of recording.

Written by the experiment's collector (cli/experiment/collector.py): the fault injector's
`fault` (detail `kind=KIND[;duration_s=S]`), `resumed`, `healed`, `started_again`; the
coordinators' ClusterEvents (`node_dead`, `node_recovered`, `node_restarted`, ...); gossip
peers' own verdicts (`suspect`, `dead`, `alive`, detail `by=OBSERVER;...`); and the
collector's own detector (`silent`, `heard_again`, `coordinator_silent`,
`coordinator_heard_again`). Times are seconds from the load generator's t = 0; `detail`
is free text, by convention `key=value` pairs separated by `;` (detail_fields reads them).
What the report derives from these events (each fault's recovery) is not written here
but in recovery.csv.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemons.rundir.cells import Row, read_rows, write_rows

EVENTS = "events.csv"

EVENT_COLUMNS = ("t_s", "kind", "target", "detail")
FAULT = "fault"  # the kind of an injected fault


@dataclass(frozen=True)
class Event:
    """A fault, a detection, a failover, a node coming back."""

    t_s: float
    kind: str  # lower-case
    target: str
    detail: str = ""

    def fields(self) -> dict[str, str]:
        return detail_fields(self.detail)


def fault_detail(kind: str, duration_s: float = 0.0) -> str:
    """The detail of a `fault` event: `kind=KIND[;duration_s=S]` (both engines write it)."""
    return f"kind={kind}" + (f";duration_s={duration_s:g}" if duration_s else "")


def detail_fields(detail: str) -> dict[str, str]:
    """`key=value` pairs of an event's detail; free text between them is ignored."""
    pairs = (tok.split("=", 1) for tok in re.split(r"[\s,;]+", detail) if "=" in tok)
    return {k.strip(): v.strip() for k, v in pairs}


def write_events(path: str | Path, events: Iterable[Event]) -> None:
    """Write events.csv (EVENT_COLUMNS) at `path`."""
    write_rows(path, EVENT_COLUMNS, events)


def read_events(path: Path) -> list[Event]:
    """Read events.csv in file order; kinds lower-cased."""
    return [_event(row) for row in read_rows(path, EVENT_COLUMNS)]


def _event(row: Row) -> Event:
    return Event(t_s=row.number("t_s", required=True), kind=row.text("kind").lower(),
                 target=row.text("target"), detail=row.text("detail"))
