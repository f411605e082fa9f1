"""Workload classes: the parser and its errors, planning by share, per-class lengths and SLOs,
the schedule file's class columns, and a workload without classes left as it was."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from daemons.core.errors import ConfigError
from daemons.loadgen import WorkloadSpec, plan, read_schedule_csv, write_schedule_csv
from daemons.loadgen.classes import WorkloadClass, parse_classes
from daemons.loadgen.frames import schedule_frame
from daemons.loadgen.recorder import new_record
from daemons.loadgen.workload import from_dict
from tests.loadgen.test_cli import assert_one_line_error, invoke


def test_flag_syntax() -> None:
    classes = parse_classes("interactive:0.3:ttft=500:tpot=50, batch:0.7")
    assert classes == (WorkloadClass("interactive", 0.3, 500.0, 50.0), WorkloadClass("batch", 0.7))
    assert [c.priority for c in classes] == [2, 0]


@pytest.mark.parametrize(("value", "match"), [
    ("vip:0.3,batch:0.7", "unknown class 'vip': use one of interactive, standard, batch"),
    ("interactive:0.5,batch:0.7", "shares add up to 1.2, not 1"),
    ("interactive:0.3:ttft=-5,batch:0.7", "ttft SLO -5.0 ms must be >= 0"),
    ("interactive:0.3:tpot=-1,batch:0.7", "tpot SLO -1.0 ms must be >= 0"),
    ("interactive:x,batch:0.7", "class interactive needs a share"),
    ("interactive:0.3:slo=5,batch:0.7", "'slo=5' is not ttft=MS or tpot=MS"),
    ("batch:0.5,batch:0.5", "a class is listed twice"),
    ("", "no class given"),
    ([{"name": "batch"}], "class batch needs a share"),
    ([{"name": "batch", "share": 1, "color": "red"}], "unknown key"),
])
def test_bad_classes_name_the_problem(value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_classes(value)


def test_plan_draws_classes_by_share_with_their_lengths_and_slos() -> None:
    spec = from_dict({"duration_s": 100, "rps": 20, "prompt_tokens": "uniform:500-600", "output_tokens": 64,
                      "classes": [{"name": "interactive", "share": 0.25, "ttft_ms": 500, "tpot_ms": 40,
                                   "prompt_tokens": "uniform:10-20", "output_tokens": 8},
                                  {"name": "batch", "share": 0.75}]})
    schedule = plan(spec)
    counts = Counter(r.klass for r in schedule)
    assert 0.2 < counts["interactive"] / len(schedule) < 0.3 and counts.keys() == {"interactive", "batch"}
    for r in schedule:
        if r.klass == "interactive":
            assert 10 <= r.prompt_tokens <= 20 and r.max_new_tokens == 8
            assert (r.slo_ttft_ms, r.slo_tpot_ms, r.priority) == (500.0, 40.0, 2)
        else:
            assert 500 <= r.prompt_tokens <= 600 and r.max_new_tokens == 64
            assert (r.slo_ttft_ms, r.priority) == (0.0, 0)
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec  # manifests repeat the classes
    plain = plan(from_dict({"duration_s": 100, "rps": 20, "prompt_tokens": "uniform:500-600", "output_tokens": 64}))
    assert [r.t_s for r in plain] == [r.t_s for r in schedule]  # classes leave the arrivals alone


def test_a_workload_without_classes_is_unchanged(tmp_path: Path) -> None:
    spec = WorkloadSpec(duration_s=10, rps=3)
    schedule = plan(spec)
    assert all(r.klass == "" and r.priority == 0 for r in schedule)
    assert "classes" not in spec.to_dict()
    path = tmp_path / "s.csv"
    write_schedule_csv(path, schedule)
    assert path.read_text().splitlines()[0] == "request_id,t_s,model,prompt_tokens,max_new_tokens"
    assert read_schedule_csv(path) == schedule


def test_schedule_file_keeps_the_class_and_its_slos(tmp_path: Path) -> None:
    schedule = plan(WorkloadSpec(duration_s=10, rps=3, classes=parse_classes("interactive:0.5:ttft=300,batch:0.5")))
    path = tmp_path / "s.csv"
    write_schedule_csv(path, schedule)
    assert read_schedule_csv(path) == schedule
    text = path.read_text().replace(",interactive,", ",vip,", 1)
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"line \d+: class 'vip' is unknown"):
        read_schedule_csv(path)


def test_a_request_carries_its_class_priority_and_slo_on_the_wire() -> None:
    from daemons.bus import decode

    req = next(r for r in plan(WorkloadSpec(duration_s=10, rps=3, classes=parse_classes(
        "interactive:0.5:ttft=300,batch:0.5"))) if r.klass == "interactive")
    body = decode(schedule_frame(new_record(req), "loadgen", priority=0)).body
    assert (body.priority, body.slo_ttft_s) == (2, 0.3)  # type: ignore[union-attr]


@pytest.mark.parametrize(("classes", "match"), [
    ("vip:1", "unknown class 'vip'"),
    ("interactive:0.5,batch:0.4", "shares add up to 0.9"),
    ("interactive:1:ttft=-1", "ttft SLO -1.0 ms must be >= 0"),
])
def test_plan_flag_errors_are_one_line_exit_2(tmp_path: Path, classes: str, match: str) -> None:
    code, _, err = invoke("loadgen", "plan", "--duration", "5", "--classes", classes, "-o", tmp_path / "s.csv")
    assert_one_line_error(code, err, match)
