"""The winners table: directions, ties, headers, and the CSV / Markdown files."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest

from cli.report import Summary, compare, prototype_comparison, render_text, summarize, write_comparison
from cli.report.compare import METRICS, Comparison, winner
from cli.report.text import format_summary
from tests.report.builders import RECOVERIES, REQUESTS, req, scaled, write_run


def two_runs(tmp_path: Path) -> tuple[Summary, Summary]:
    """The gossip run loses r2 (error) and is 1 s slower on r1: TTFT 1.125, .5, 1.0 (avg 875 ms)."""
    gossip_requests = [REQUESTS[0] | {"first_token_s": 1.125, "done_s": 2.125},
                       REQUESTS[1] | {"status": "error", "first_token_s": "", "done_s": ""}, *REQUESTS[2:]]
    central = summarize(write_run(tmp_path, scheduler="centralized", recoveries=RECOVERIES))
    gossip = summarize(write_run(tmp_path, scheduler="gossip", requests=gossip_requests))
    return central, gossip


def row(c: Comparison, key: str) -> tuple[tuple[str, ...], str]:
    (r,) = [r for r in c.rows if r.metric.key == key]
    return r.texts, r.winner


def test_lower_and_higher_is_better(tmp_path: Path) -> None:
    c = compare(two_runs(tmp_path))
    assert c.headers == ("centralized", "gossip")
    assert row(c, "success_rate") == (("66.7%", "50.0%"), "centralized")
    # Success differs by 16.7 points: latency cells say what share they are measured on; the
    # more successful run keeps its latency win.
    assert row(c, "avg_ttft") == (("468.75 (66.7% ok)", "875.00 (50.0% ok)"), "centralized")
    assert row(c, "timeout_count") == (("1", "1"), "tie")
    # Same node telemetry in both runs: a tie, not a win by float noise.
    assert row(c, "avg_memory_utilization") == (("60.0%", "60.0%"), "tie")
    assert row(c, "migrate_count")[1] == "-"  # no better direction


def test_winner_rules() -> None:
    h = ("a", "b", "c")
    assert winner([3.0, 1.0, 2.0], "lower", h) == "b"
    assert winner([3.0, 1.0, 2.0], "higher", h) == "a"
    assert winner([1.0, 1.0, 1.0], "lower", h) == "tie"
    # The best value shared by some: a tie between those, which the cell names.
    assert winner([1.0, 1.0, 2.0], "lower", h) == "tie: a, b"
    assert winner([100.0, 44.4, 100.0], "higher", h) == "tie: a, c"
    assert winner([1.0, math.nan, 2.0], "lower", h) == "n/a"  # cannot be judged
    assert winner([1.0, 2.0, 3.0], "", h) == "-"
    assert winner([1.0], "lower", ("a",)) == "-"


def test_values_compared_as_displayed(tmp_path: Path) -> None:
    central, gossip = two_runs(tmp_path)
    nudged = dataclasses.replace(gossip, avg_ttft=central.avg_ttft + 1e-7)  # 0.0001 ms: not shown
    assert row(compare([central, nudged]), "avg_ttft")[1] == "tie"


def test_headers_are_dir_names_when_types_repeat(tmp_path: Path) -> None:
    a = summarize(write_run(tmp_path, name="a", scheduler="gossip"))
    b = summarize(write_run(tmp_path, name="b", scheduler="gossip"))
    assert compare([a, b]).headers == ("a_gossip_20250101_120000", "b_gossip_20250101_120000")


def test_three_runs(tmp_path: Path) -> None:
    # Same requests, all served; b ran them twice as fast, c half as fast, same configured duration.
    runs = [summarize(write_run(tmp_path, name=n, scheduler="gossip", requests=scaled(REQUESTS, k)))
            for n, k in (("a", 1.0), ("b", 0.5), ("c", 2.0))]
    c = compare(runs)
    assert row(c, "request_throughput") == (("0.800", "1.600", "0.400"), "b_gossip_20250101_120000")
    assert row(c, "success_rate") == (("66.7%", "66.7%", "66.7%"), "tie")


def test_three_runs_partial_tie_names_the_leaders(tmp_path: Path) -> None:
    full = [req(f"r{i}", i, i + 0.25, i + 0.5, "SERVE", 2) for i in range(9)]
    partial = [*full[:4], *(req(f"r{i}", i, None, None, "", 0, "error", "no_capacity") for i in range(4, 9))]
    runs = [summarize(write_run(tmp_path, name=n, scheduler="gossip", requests=rows, planned_requests=9))
            for n, rows in (("a", full), ("b", partial), ("c", full))]
    texts, verdict = row(compare(runs, labels=["a", "b", "c"]), "success_rate")
    assert (texts, verdict) == (("100.0%", "44.4%", "100.0%"), "tie: a, c")


def test_text_table_layout(tmp_path: Path) -> None:
    text = render_text(compare(two_runs(tmp_path)))
    lines = text.splitlines()
    assert lines[1] == "COMPARISON REPORT: CENTRALIZED VS GOSSIP"
    assert lines[0] == lines[2] == lines[-1] and set(lines[0]) == {"="}
    # The prototype's columns: metric padded to 40, values to 20, one space between.
    assert lines[4] == f"{'Metric':<40} {'centralized':<20} {'gossip':<20} Winner"
    assert f"{'Success Rate (%)':<40} {'66.7%':<20} {'50.0%':<20} centralized" in lines
    assert len(lines) == 4 + 1 + 1 + len(METRICS) + 1


def test_files(tmp_path: Path) -> None:
    c = compare(two_runs(tmp_path))
    csv_path, md_path = write_comparison(c, tmp_path / "out")
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["metric", "key", "better", "centralized", "gossip", "winner"]
    assert rows[0] == {"metric": "Success Rate (%)", "key": "success_rate", "better": "higher",
                       "centralized": "66.7", "gossip": "50.0", "winner": "centralized"}
    by_key = {r["key"]: r for r in rows}
    assert by_key["avg_ttft"]["centralized"] == "468.75"
    assert by_key["goodput"]["winner"] == "centralized"
    md = md_path.read_text().splitlines()
    assert md[0] == "# Comparison: centralized vs gossip"
    assert md[2] == "| Metric | centralized | gossip | Winner |"
    assert md[3].startswith("|---|")
    assert "| Avg TTFT (ms) | 468.75 (66.7% ok) | 875.00 (50.0% ok) | centralized |" in md


def test_a_lossy_run_cannot_win_on_latency_alone(tmp_path: Path) -> None:
    """Gossip fails its two slowest requests and so looks faster: its latency wins are marked
    n/a with what it lost; within one point of success, the latency winner stands."""
    central = summarize(write_run(tmp_path, scheduler="centralized", requests=REQUESTS[:4]))  # 4/4 ok
    failed = {"status": "error", "first_token_s": "", "done_s": ""}
    lossy = summarize(write_run(tmp_path, scheduler="gossip",
                                requests=[*REQUESTS[:2], REQUESTS[2] | failed, REQUESTS[3] | failed]))
    c = compare([central, lossy])
    assert row(c, "success_rate") == (("100.0%", "50.0%"), "centralized")
    texts, won = row(c, "p99_ttft")
    assert texts == ("985.00 (100.0% ok)", "248.75 (50.0% ok)")
    assert won == "n/a (gossip lost 50.0% of requests)"
    assert all(r.winner.startswith("n/a (gossip lost") for r in c.rows if r.metric.successes_only
               and r.values[1] < r.values[0])
    close = dataclasses.replace(lossy, success_rate=0.995)  # half a point: not lossy
    assert row(compare([central, close]), "p99_ttft") == (("985.00", "248.75"), "gossip")


def test_missing_metric_has_no_winner(tmp_path: Path) -> None:
    central, gossip = two_runs(tmp_path)
    no_faults = dataclasses.replace(gossip, avg_recovery_time=math.nan, fault_count=0, recovery_count=0)
    assert row(compare([central, no_faults]), "avg_recovery_time") == (("2.75", "-"), "n/a")


def test_not_recovered_is_said_in_words(tmp_path: Path) -> None:
    """Faults that never recovered read "not recovered", not "-" (nothing to report); an
    average over some of the faults says how many it covers."""
    central, gossip = two_runs(tmp_path)
    never = dataclasses.replace(gossip, avg_recovery_time=math.nan, fault_count=2, recovery_count=0)
    some = dataclasses.replace(central, fault_count=3)
    assert row(compare([some, never]), "avg_recovery_time") == (("2.75 (2 of 3 recovered)", "not recovered"), "n/a")
    assert "recovery    not recovered (2 faults, none recovered)" in format_summary(never)
    assert "recovery    avg 2.75 s over 2 recoveries (3 faults), 1 not recovered" in format_summary(some)


def test_prototype_report_places_runs_by_type(tmp_path: Path) -> None:
    central, gossip = two_runs(tmp_path)
    c = prototype_comparison([gossip, central])
    assert c.headers == ("Centralized", "Gossip")
    assert row(c, "success_rate") == (("66.7%", "50.0%"), "Centralized")


def test_prototype_report_with_one_run(tmp_path: Path) -> None:
    _, gossip = two_runs(tmp_path)
    c = prototype_comparison([gossip])
    assert row(c, "success_rate") == (("-", "50.0%"), "-")
    assert all(r.winner == "-" for r in c.rows)
    assert "COMPARISON REPORT: CENTRALIZED VS GOSSIP" in render_text(c)


def test_prototype_report_gives_three_arms_a_column_each(tmp_path: Path) -> None:
    central, gossip = two_runs(tmp_path)
    hybrid = dataclasses.replace(gossip, scheduler_type="hybrid", decided_by_peer=5, decided_by_coordinator=2)
    c = prototype_comparison([central, gossip, hybrid])
    assert c.headers == ("centralized", "gossip", "hybrid")
    assert row(c, "decided_by_coordinator") == (("0", "0", "2"), "-")
    assert "decided_by_peer" not in {r.metric.key for r in prototype_comparison([central, gossip]).rows}
    with pytest.raises(ValueError):
        prototype_comparison([])


def test_two_arms_other_than_centralized_and_gossip_are_headed_by_their_own_names(tmp_path: Path) -> None:
    central, gossip = two_runs(tmp_path)
    hybrid = dataclasses.replace(gossip, scheduler_type="hybrid", decided_by_peer=5, decided_by_coordinator=2)
    c = prototype_comparison([central, hybrid])
    assert c.headers == ("centralized", "hybrid")
    assert row(c, "success_rate") == (("66.7%", "50.0%"), "centralized")
    assert "CENTRALIZED VS HYBRID" in render_text(c) and "Gossip" not in render_text(c)
    twins = prototype_comparison([central, dataclasses.replace(central, run_dir=str(tmp_path / "other"))])
    assert "Gossip" not in twins.headers and len(set(twins.headers)) == 2
