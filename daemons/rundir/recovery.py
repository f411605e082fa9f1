"""recovery.csv: the recovery figures of each fault, one row per `fault` event of events.csv.

Derived data, not observations: the report (cli/report/recovery.py, which defines each
figure) computes them from requests.csv and events.csv and writes this file; the summary
(avg_recovery_time), the text report and the plots read them from here, so every reader
sees the same numbers. Times are seconds; an empty cell is a figure that does not exist:

    t_s              when the fault was injected (seconds from t = 0)
    target           what it broke (a node name, or `coordinator`)
    fault            its kind (kill, stop, pause, restart, partition)
    detection_s      first verdict about the target after t_s, minus t_s
    drain_s          last completion of the requests in flight on the target at t_s, minus t_s
    recovery_s       service back to the pre-fault baseline, minus t_s; empty: not recovered
    base_success     the baseline's success rate (0..1) recovery was judged against
    base_p99_ttft_s  the baseline's p99 TTFT
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daemons.rundir.cells import NAN, Row, read_rows, write_rows

RECOVERY = "recovery.csv"

RECOVERY_COLUMNS = ("t_s", "target", "fault", "detection_s", "drain_s", "recovery_s", "base_success",
                    "base_p99_ttft_s")


@dataclass(frozen=True)
class Recovery:
    """One fault and how the cluster got over it (NaN: did not happen, or no baseline)."""

    t_s: float
    target: str
    fault: str
    detection_s: float
    drain_s: float
    recovery_s: float
    base_success: float = NAN
    base_p99_ttft_s: float = NAN

    @property
    def recovered(self) -> bool:
        return not math.isnan(self.recovery_s)


def write_recoveries(path: str | Path, recoveries: Iterable[Recovery]) -> None:
    """Write recovery.csv (RECOVERY_COLUMNS) at `path`."""
    write_rows(path, RECOVERY_COLUMNS, recoveries)


def read_recoveries(path: Path) -> list[Recovery]:
    """Read recovery.csv in file order."""
    return [_recovery(row) for row in read_rows(path, RECOVERY_COLUMNS)]


def _recovery(row: Row) -> Recovery:
    return Recovery(
        t_s=row.number("t_s", required=True), target=row.text("target"), fault=row.text("fault"),
        detection_s=row.number("detection_s"), drain_s=row.number("drain_s"),
        recovery_s=row.number("recovery_s"), base_success=row.number("base_success"),
        base_p99_ttft_s=row.number("base_p99_ttft_s"),
    )
