"""The command functions as the experiment runner will register them, driven through Typer."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.report import compare_command, print_prototype_report, report_command, summarize
from tests.report.builders import req, write_run

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
app.command("report")(report_command)
app.command("compare")(compare_command)
runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_report_prints_and_writes(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    code, out, err = invoke("report", run)
    assert (code, err) == (0, "")
    assert "468.75" in out  # avg TTFT in ms
    assert "0.400 req/s (2 of 4 ok requests meet TTFT <= 250 ms, TPOT <= 250 ms)" in out
    assert "0.800 req/s, 4.0 output tok/s over 5.00 s (first send to last completion)" in out
    assert "SERVE 3, SERVE_LOADING 0, COLD_START 1, MIGRATE 1" in out
    assert "50.0% (2 successful requests found their model ready)" in out
    assert "ok: 6 planned, one row each" in out
    for name in ("summary.csv", "ttft_cdf.png", "nodes.png", "actions.png", "timeline.png", "recovery.png"):
        assert (run / name).stat().st_size > 0, name


def test_report_slo_flags_and_no_plots(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    code, out, _ = invoke("report", run, "--slo-ttft-ms", "1000", "--no-plots")
    assert code == 0
    assert "3 of 4 ok requests meet TTFT <= 1000 ms, TPOT <= 250 ms" in out
    assert not (run / "timeline.png").exists()
    with (run / "summary.csv").open(newline="") as fh:
        assert next(csv.DictReader(fh))["good_requests"] == "3"


def test_report_missing_dir_is_one_error_line(tmp_path: Path) -> None:
    code, out, err = invoke("report", tmp_path / "nope")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "no such results directory" in err


def test_report_malformed_csv(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    (run / "nodes.csv").write_text("t_s,node\n0,a\n")
    code, _, err = invoke("report", run)
    assert code == 2
    assert err.startswith(f"error: {run / 'nodes.csv'}: header lacks column(s) memory_utilization")


def test_report_mismatch_exits_nonzero_after_writing(tmp_path: Path) -> None:
    run = write_run(tmp_path, planned_requests=10)
    code, out, err = invoke("report", run, "--no-plots")
    assert code == 1
    assert "MISMATCH: 6 rows recorded for 10 planned requests (4 missing)" in out
    assert err.startswith("error: ") and "4 missing" in err
    assert (run / "summary.csv").exists()


def test_compare(tmp_path: Path) -> None:
    a = write_run(tmp_path, scheduler="centralized")
    b = write_run(tmp_path, scheduler="gossip")
    code, out, err = invoke("compare", a, b)
    assert (code, err) == (0, "")
    assert "COMPARISON REPORT: CENTRALIZED VS GOSSIP" in out
    for name in ("comparison.csv", "comparison.md", "ttft_cdf_compare.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (a / "summary.csv").exists() and (b / "summary.csv").exists()


def test_compare_three_runs_judges_only_what_it_can(tmp_path: Path) -> None:
    """100 % / 44.4 % / 100 %: a tie between the two that serve all, never a plain "tie";
    a figure missing in one run (no recovery without faults) is "n/a", not a winner."""
    full = [req(f"r{i}", i, i + 0.25, i + 0.5, "SERVE", 2) for i in range(9)]
    partial = [*full[:4], *(req(f"r{i}", i, None, None, "", 0, "error", "no_capacity") for i in range(4, 9))]
    dirs = [write_run(tmp_path, name=n, scheduler="gossip", requests=rows, planned_requests=9, **extra)
            for n, rows, extra in (("a", full, {}), ("b", partial, {}), ("c", full, {"events": []}))]
    code, out, err = invoke("compare", *dirs, "--no-plots")
    assert (code, err) == (0, "")
    success = next(x for x in out.splitlines() if x.startswith("Success Rate"))
    assert success.split()[3:] == ["100.0%", "44.4%", "100.0%", "tie:", "a_gossip_20250101_120000,",
                                   "c_gossip_20250101_120000"]
    with (tmp_path / "comparison.csv").open(newline="") as fh:
        winners = {r["key"]: r["winner"] for r in csv.DictReader(fh)}
    assert winners["avg_recovery_time"] == "n/a"
    assert winners["cold_start_count"] == "-"  # a count: no direction
    assert winners["cache_hit_rate"] == "tie"  # every served request found its model ready


def test_compare_out_dir(tmp_path: Path) -> None:
    a = write_run(tmp_path, scheduler="centralized")
    b = write_run(tmp_path, scheduler="gossip")
    code, _, _ = invoke("compare", a, b, "--out", tmp_path / "reports", "--no-plots")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["comparison.csv", "comparison.md"]


def test_compare_needs_two_dirs(tmp_path: Path) -> None:
    code, _, err = invoke("compare", write_run(tmp_path))
    assert code == 2
    assert err.startswith("error: compare needs two or more results directories")


def test_compare_mismatch_exits_nonzero(tmp_path: Path) -> None:
    a = write_run(tmp_path, scheduler="centralized")
    b = write_run(tmp_path, scheduler="gossip", planned_requests=7)
    code, out, err = invoke("compare", a, b, "--no-plots")
    assert code == 1
    assert "COMPARISON REPORT" in out
    assert str(b) in err and "1 missing" in err


@pytest.mark.parametrize("command", ["report", "compare"])
def test_help_has_examples(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"schedctl experiment {command} results/" in result.stdout
    assert "--slo-ttft-ms" in result.stdout


def test_print_prototype_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gossip = summarize(write_run(tmp_path, scheduler="gossip", planned_requests=9))
    print_prototype_report([gossip])
    out, err = capsys.readouterr()
    assert "Metric" in out and "Centralized" in out and "Gossip" in out
    line = next(x for x in out.splitlines() if x.startswith("Success Rate"))
    assert line.split() == ["Success", "Rate", "(%)", "-", "66.7%", "-"]
    assert err.startswith("warning: gossip run") and "3 missing" in err


def test_compare_keeps_an_earlier_comparison_unless_forced(tmp_path: Path) -> None:
    a = write_run(tmp_path, scheduler="centralized")
    b = write_run(tmp_path, scheduler="gossip")
    assert invoke("compare", a, b, "--no-plots")[0] == 0
    before = (tmp_path / "comparison.csv").read_text()
    (tmp_path / "comparison.csv").write_text("an earlier comparison\n")
    code, out, err = invoke("compare", a, b, "--no-plots")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {tmp_path / 'comparison.csv'}") and "--force" in err and "-o DIR" in err
    assert (tmp_path / "comparison.csv").read_text() == "an earlier comparison\n"
    assert invoke("compare", a, b, "--no-plots", "--force")[0] == 0
    assert (tmp_path / "comparison.csv").read_text() == before
