"""Per-class figures: summary columns `<class>_<figure>`, each request judged by its class's
SLO, shed requests counted, and the text report's class block."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.report import summarize
from cli.report.summary import summary_row
from cli.report.text import format_summary
from tests.report.builders import REQUEST_HEADER, REQUESTS, req, write_csv, write_run

CLASS_COLUMNS = ["class", "slo_ttft_ms", "slo_tpot_ms"]


def classed_run(tmp_path: Path) -> Path:
    """builders.REQUESTS with r1, r2 interactive (TTFT SLO 200 ms) and the rest batch (the
    run's SLO: TTFT and TPOT 250 ms), plus r7, a batch request shed at t = 6."""
    run_dir = write_run(tmp_path, planned_requests=7)
    shed = req("r7", 6, None, None, "", 0, "shed", "shed")
    rows = []
    for r in [*REQUESTS, shed]:
        interactive = r["request_id"] in ("r1", "r2")
        rows.append({**r, "class": "interactive" if interactive else "batch",
                     "slo_ttft_ms": 200 if interactive else "", "slo_tpot_ms": ""})
    write_csv(run_dir / "requests.csv", [*REQUEST_HEADER, *CLASS_COLUMNS], rows)
    return run_dir


def test_figures_per_class_and_each_request_judged_by_its_class_slo(tmp_path: Path) -> None:
    s = summarize(classed_run(tmp_path))
    assert (s.total_requests, s.successful_requests, s.failed_requests, s.shed_count) == (7, 4, 3, 1)
    # r2 (TTFT 250 ms) meets the run's 250 ms but not its class's 200 ms: only r1 is good.
    assert s.good_requests == 1
    row = summary_row(s)
    assert "classes" not in row
    interactive = {k: row[f"interactive_{k}"] for k in ("requests", "successful", "shed", "slo_attainment")}
    assert interactive == {"requests": "2", "successful": "2", "shed": "0", "slo_attainment": "0.5"}
    assert float(row["interactive_ttft_p50"]) == pytest.approx(0.1875)
    assert float(row["interactive_goodput"]) == pytest.approx(1 / 6)  # window: first send 0 to r7's send 6
    batch = {k: row[f"batch_{k}"] for k in ("requests", "successful", "shed", "slo_attainment")}
    assert batch == {"requests": "5", "successful": "2", "shed": "1", "slo_attainment": "0"}
    text = format_summary(s)
    assert "1 shed" in text
    block = text[text.index("class "):].splitlines()
    assert block[0].split()[:4] == ["class", "requests", "ok", "shed"]
    assert block[1].split()[:4] == ["interactive", "2", "2", "0"] and block[1].endswith("50.0%")
    assert block[2].split()[:4] == ["batch", "5", "2", "1"]


def test_a_run_without_classes_has_no_class_columns_or_block(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    assert s.classes == () and s.shed_count == 0
    assert not [k for k in summary_row(s) if k.startswith(("interactive_", "batch_"))]
    assert "SLO met" not in format_summary(s)


def test_the_comparison_has_rows_per_class_only_with_classes(tmp_path: Path) -> None:
    from cli.report.compare import compare

    classed = summarize(classed_run(tmp_path / "a"))
    plain = summarize(write_run(tmp_path / "b"))
    rows = {r.metric.label: r for r in compare([classed, classed]).rows}
    assert rows["interactive: P99 TTFT (ms)"].texts[0] == f"{1000 * classed.classes[0].ttft_p99:.2f}"
    assert rows["batch: Shed"].texts == ("1", "1") and rows["interactive: SLO Attainment (%)"].texts[0] == "50.0%"
    assert not [r for r in compare([plain, plain]).rows if ":" in r.metric.label]


def test_a_run_with_classes_plots_one_ttft_cdf_per_class(tmp_path: Path) -> None:
    from cli.report.plots import TTFT_CDF_BY_CLASS, by_class, class_cdf_figure, write_run_plots
    from cli.report.results import load_run

    run = load_run(classed_run(tmp_path / "classed"))
    assert sorted(by_class(run.requests)) == ["batch", "interactive"]
    (ax,) = class_cdf_figure(run).axes
    assert sorted(t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()) == ["batch", "interactive"]
    assert (run.run_dir / TTFT_CDF_BY_CLASS) in write_run_plots(run)
    plain = load_run(write_run(tmp_path / "plain"))  # one class: no per-class plot
    assert (plain.run_dir / TTFT_CDF_BY_CLASS) not in write_run_plots(plain)
