"""The load generator: workload models, the open-loop sender and the per-request recorder.

    spec = WorkloadSpec(duration_s=60, rps=20, cv=8, seed=1, models=("a", "b"), popularity="zipf")
    schedule = plan(spec)                          # every request, generated up front
    write_schedule_csv("schedule.csv", schedule)   # so both schedulers replay the same list
    results = run(LoadgenConfig(coordinator="tcp://127.0.0.1:5555"), schedule)
    write_requests_csv("requests.csv", results)

It talks to the other daemons over the wire only (`daemons.bus`).
"""

from daemons.loadgen.config import LoadgenConfig
from daemons.loadgen.distributions import LengthDist, parse_length
from daemons.loadgen.recorder import RequestRecord
from daemons.loadgen.results import (
    Progress,
    Results,
    write_requests_csv,
    write_summary_json,
)
from daemons.loadgen.schedule import read_schedule_csv, write_schedule_csv
from daemons.loadgen.sender import run
from daemons.loadgen.workload import PlannedRequest, WorkloadSpec, plan, plan_fitted

__all__ = [
    "LengthDist",
    "LoadgenConfig",
    "PlannedRequest",
    "Progress",
    "RequestRecord",
    "Results",
    "WorkloadSpec",
    "parse_length",
    "plan",
    "plan_fitted",
    "read_schedule_csv",
    "run",
    "write_requests_csv",
    "write_schedule_csv",
    "write_summary_json",
]
