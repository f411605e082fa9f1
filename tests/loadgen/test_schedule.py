"""The schedule file: an exact round trip, sorting, and malformed files named by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemons.core.errors import ConfigError
from daemons.loadgen import WorkloadSpec, plan, read_schedule_csv, write_schedule_csv
from daemons.loadgen.workload import PlannedRequest

HEADER = "request_id,t_s,model,prompt_tokens,max_new_tokens\n"


def test_round_trip_is_exact(tmp_path: Path) -> None:
    schedule = plan(WorkloadSpec(duration_s=30, rps=20, cv=8, seed=1, models=("a", "b/c")))
    path = tmp_path / "schedule.csv"
    assert write_schedule_csv(path, schedule) == len(schedule)
    assert read_schedule_csv(path) == schedule


def test_rows_are_sorted_by_time_and_columns_may_be_reordered(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("model,t_s,request_id,max_new_tokens,prompt_tokens\nm,2.5,b,4,3\nm,0.5,a,2,1\n\n")
    assert read_schedule_csv(path) == [PlannedRequest("a", 0.5, "m", 1, 2), PlannedRequest("b", 2.5, "m", 3, 4)]


@pytest.mark.parametrize(("body", "match"), [
    ("request_id,t_s,model\nr,1,m\n", "line 1: missing column.*prompt_tokens, max_new_tokens.*schedctl loadgen plan"),
    (HEADER, "no requests after the header"),
    (HEADER + "r1,abc,m,1,1\n", "line 2: t_s 'abc' is not a number"),
    (HEADER + "r1,-1,m,1,1\n", "line 2: t_s '-1' must be"),
    (HEADER + "r1,inf,m,1,1\n", "line 2: t_s 'inf' must be"),
    (HEADER + "r1,1,m,0,1\n", "line 2: prompt_tokens 0 must be in"),
    (HEADER + "r1,1,m,1,1.5\n", "line 2: max_new_tokens '1.5' is not a whole number"),
    (HEADER + "r1,1,,1,1\n", "line 2: model is empty"),
    (HEADER + "r1,1,m,1,1\nr1,2,m,1,1\n", "line 3: request_id 'r1' appears twice"),
    (HEADER + "r1,1,m,1\n", "line 2: 4 fields, the header has 5"),
    (HEADER + "r 1,1,m,1,1\n", "line 2: request_id 'r 1'"),
])
def test_malformed_schedules_name_file_line_and_fix(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text(body)
    with pytest.raises(ConfigError, match=match) as info:
        read_schedule_csv(path)
    assert str(path) in str(info.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; create one with `schedctl loadgen plan"):
        read_schedule_csv(tmp_path / "nope.csv")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_schedule_csv(binary)
