"""daemons/rundir: every file reads back what was written, columns are defined once, stdlib only."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemons.core.errors import ConfigError
from daemons.rundir import (
    EVENT_COLUMNS,
    HOST_COLUMNS,
    NODE_COLUMNS,
    RECOVERY_COLUMNS,
    REQUEST_COLUMNS,
    Event,
    HostSample,
    NodeSample,
    Recovery,
    RequestRow,
    detail_fields,
    read_events,
    read_hosts,
    read_nodes,
    read_recoveries,
    read_requests,
    write_events,
    write_hosts,
    write_nodes,
    write_recoveries,
    write_requests,
)
from daemons.rundir.cells import KEYWORD_ATTRS
from daemons.rundir.nodes import NODE_REQUIRED
from daemons.rundir.requests import REQUEST_REQUIRED

NAN = math.nan
ROOT = Path(__file__).resolve().parents[2]

FULL_REQUEST = RequestRow(
    request_id="r1", scheduled_s=1.5, model="facebook/opt-125m", prompt_tokens=80, max_new_tokens=32,
    sent_s=1.500001, placed_s=1.52, first_token_s=1.625, done_s=2.25, node="node-1", action="SERVE_LOADING",
    hops=1, tokens=32, finish_reason="length", status="ok", error="", error_detail="",
    est_wait_s=0.01, decision_s=0.000123, server_timings={"queue_s": 0.01, "prefill_s": 0.25}, attempts=2,
    failed_nodes=("node-0", "node-2"), coordinator="coordinator", epoch=3, reroutes=1, placed_action="SERVE",
    migrated_from="node-3", migrated_to="node-1", migration_tokens=12, migration_s=1.8, migration_resume_s=0.0625,
    migration_gap_s=0.07, decided_by="coordinator",
)
# A request the run never sent: every "did not happen" cell empty.
EMPTY_REQUEST = RequestRow(request_id="r2", scheduled_s=3.0, model="m", prompt_tokens=8, max_new_tokens=4,
                           status="not_sent", error_detail="the run was stopped, before its send time")


def plain(row: Any) -> tuple[object, ...]:
    """The row's values with NaN as None, so that rows with NaN fields compare equal."""
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in dataclasses.astuple(row))


def header(path: Path) -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8").splitlines()[0].split(","))


def test_requests_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    write_requests(path, [FULL_REQUEST, EMPTY_REQUEST])
    assert header(path) == REQUEST_COLUMNS
    assert [plain(r) for r in read_requests(path)] == [plain(FULL_REQUEST), plain(EMPTY_REQUEST)]
    lines = path.read_text(encoding="utf-8").splitlines()
    # times to the microsecond, derived ttft/latency written, lists ;-joined, JSON maps, empty = did not happen
    assert lines[1].startswith("r1,facebook/opt-125m,80,32,1.500000,1.500001,1.520000,1.625000,2.250000,0.125000,"
                               "0.750000,node-1,SERVE_LOADING,1,32,length,ok,,,0.010000,0.000123,")
    # no class, no class SLOs; then the live migration's source, destination, tokens and times; the hybrid path
    assert lines[1].endswith(',2,node-0;node-2,coordinator,3,1,SERVE,,,,node-3,node-1,12,1.800000,0.062500,0.070000,'
                             'coordinator')
    assert '"{""prefill_s"":0.25,""queue_s"":0.01}"' in lines[1]
    assert lines[2] == ('r2,m,8,4,3.000000,,,,,,,,,,,,not_sent,,"the run was stopped, before its send time",'
                        ',,,0,,,0,0,,,,,,,,,,,')


def test_request_columns_are_the_rows_attributes() -> None:
    stored = {f.name for f in dataclasses.fields(RequestRow)}
    columns = {KEYWORD_ATTRS.get(c, c) for c in REQUEST_COLUMNS}  # column `class` is the attribute klass
    assert stored | {"ttft_s", "latency_s"} == columns
    assert set(REQUEST_REQUIRED) <= set(REQUEST_COLUMNS) and set(NODE_REQUIRED) <= set(NODE_COLUMNS)
    assert (FULL_REQUEST.ttft_s, FULL_REQUEST.latency_s) == (0.125, 0.75)
    assert math.isnan(EMPTY_REQUEST.ttft_s) and not EMPTY_REQUEST.ok


def test_a_file_with_only_the_required_columns_reads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    path.write_text("request_id,scheduled_s,first_token_s,done_s,action,tokens,status,future\n"
                    "a,0.5,0.75,1,serve,3,OK,x\n", encoding="utf-8")
    (row,) = read_requests(path)
    assert (row.action, row.status, row.tokens, row.failed_nodes, row.server_timings) == ("SERVE", "ok", 3, (), {})
    assert math.isnan(row.sent_s) and row.ttft_s == 0.25


@pytest.mark.parametrize(("cell", "want"), [("x", "a number"), ("-1", "a non-negative integer"),
                                            ("1.5", "a non-negative integer")])
def test_a_bad_cell_names_file_line_and_column(tmp_path: Path, cell: str, want: str) -> None:
    path = tmp_path / "requests.csv"
    write_requests(path, [FULL_REQUEST])
    text = path.read_text(encoding="utf-8").replace(",32,length", f",{cell},length")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"requests\.csv:2: column 'tokens' must be {want}"):
        read_requests(path)


def test_nodes_round_trip(tmp_path: Path) -> None:
    samples = [
        NodeSample(t_s=0.001, node="node-0", memory_utilization=0.4567, queue_depth=3, alive=True,
                   gpu_utilization=0.123456789, memory_used=4567, memory_total=10000, in_flight=2,
                   loaded_models=("a/b", "c/d")),
        NodeSample(t_s=1.0, node="node-1", memory_utilization=0.0, queue_depth=0, alive=False,
                   memory_used=0, memory_total=0, in_flight=0),  # GPU compute not measured
    ]
    path = tmp_path / "nodes.csv"
    write_nodes(path, samples)
    assert header(path) == NODE_COLUMNS
    assert [plain(s) for s in read_nodes(path)] == [plain(s) for s in samples]
    assert path.read_text(encoding="utf-8").splitlines()[1:] == [
        "0.001,node-0,4567,10000,0.4567,3,2,a/b;c/d,1,0.123456789", "1.0,node-1,0,0,0.0,0,0,,0,"]


def test_nodes_utilization_from_bytes_when_the_ratio_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("t_s,node,memory_used,memory_total,memory_utilization,queue_depth\n0,n,300,1000,,1\n")
    (sample,) = read_nodes(path)
    assert (sample.memory_utilization, sample.alive) == (0.3, True)  # no alive column: alive


def test_hosts_round_trip(tmp_path: Path) -> None:
    samples = [HostSample(t_s=0.5, host_cpu=0.9512, schedctl_cpu=0.25, daemons_cpu=0.125, processes=7),
               HostSample(t_s=1.5, host_cpu=0.1, schedctl_cpu=NAN)]  # a row without the run's figures
    path = tmp_path / "host.csv"
    write_hosts(path, samples)
    assert header(path) == HOST_COLUMNS
    assert [plain(s) for s in read_hosts(path)] == [plain(s) for s in samples]
    assert path.read_text(encoding="utf-8").splitlines()[1:] == ["0.5,0.9512,0.25,0.125,7", "1.5,0.1,,,"]
    path.write_text("t_s,host_cpu\n2,0.5\n")  # only the required columns
    assert [plain(s) for s in read_hosts(path)] == [plain(HostSample(2.0, 0.5))]


def test_events_round_trip(tmp_path: Path) -> None:
    events = [Event(5.0, "fault", "node-1", "kind=pause;duration_s=4"), Event(6.25, "silent", "node-1", ""),
              Event(7.5, "suspect", "node-1", "by=node-0;incarnation=0, with a comma")]
    path = tmp_path / "events.csv"
    write_events(path, events)
    assert header(path) == EVENT_COLUMNS
    assert read_events(path) == events
    assert events[0].fields() == {"kind": "pause", "duration_s": "4"}


def test_detail_fields() -> None:
    assert detail_fields("recovery_s=12.3; detected_s=1.9, note free text") == {
        "recovery_s": "12.3", "detected_s": "1.9"}


def test_recoveries_round_trip(tmp_path: Path) -> None:
    found = [Recovery(5.0, "node-1", "kill", 1.25, 3.5, 4.0, 1.0, 0.1234567891234),
             Recovery(9.0, "coordinator", "kill", NAN, 0.0, NAN)]  # never detected, never recovered, no baseline
    path = tmp_path / "recovery.csv"
    write_recoveries(path, found)
    assert header(path) == RECOVERY_COLUMNS
    back = read_recoveries(path)
    assert [plain(r) for r in back] == [plain(r) for r in found]  # exactly: floats written losslessly
    assert [r.recovered for r in back] == [True, False]
    assert path.read_text(encoding="utf-8").splitlines()[2] == "9.0,coordinator,kill,,0.0,,,"


def test_missing_file_and_column_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recovery\.csv: missing"):
        read_recoveries(tmp_path / "recovery.csv")
    (tmp_path / "events.csv").write_text("t_s,kind,target\n")
    with pytest.raises(ConfigError, match=r"events\.csv: header lacks column\(s\) detail"):
        read_events(tmp_path / "events.csv")


def test_rundir_is_standard_library_only() -> None:
    """Daemons and CLI both import it: no third-party package, nothing of the project but core."""
    probe = ("import sys; before = set(sys.modules); import daemons.rundir; "
             "print(' '.join(sorted(m for m in set(sys.modules) - before "
             "if m.split('.')[0] not in sys.stdlib_module_names)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(out.stdout.split())
    assert loaded and all(m == "daemons" or m.startswith(("daemons.rundir", "daemons.core")) for m in loaded), loaded
